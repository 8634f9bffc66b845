//! How raw Criteo samples become a trained model's inputs: what a checkpoint must carry for the
//! model to score lines it never saw (`ttrec predict`).
//!
//! The dense transform is dlrm's ([`dense_transform`]); the categorical rule is either the
//! training data's dictionaries (value, after `% max_ind_range`, to id) or, for a model trained
//! on the synthetic source whose ids are the values, `value % rows`.
//!
//! **Unseen categories.** dlrm has none: its dictionaries span every day it reads. A value the
//! training data never held is scored as dlrm scores a missing one (missing -> 0, then an
//! ordinary category): it takes the id of value 0 in its column, or id 0 when the training data
//! had no 0 there either. The scorer counts them per column.

use super::hash::IntHashMap;
use super::preprocess::{categorical_value, dense_transform};
use super::{RawSample, NUM_DENSE, NUM_SPARSE};
use crate::{Error, Result};

/// The name of the dense transform in a checkpoint (dlrm's: missing and negatives -> 0, then
/// `ln(x + 1)`).
pub const DENSE_TRANSFORM: &str = "dlrm-log1p";

/// How categorical values become row ids.
#[derive(Clone, Debug, PartialEq)]
pub enum Categories {
    /// Per column, the values in id order (what the data store keeps).
    Dictionary(Vec<Vec<u32>>),
    /// `value % rows[c]` (models of the synthetic source, whose ids are the values).
    Modulo([u64; NUM_SPARSE]),
}

/// Everything that maps a raw sample to the inputs of the model it trained.
#[derive(Clone, Debug, PartialEq)]
pub struct Encoding {
    /// Categorical values are taken `% max_ind_range` first (dlrm's option).
    pub max_ind_range: Option<u64>,
    pub categories: Categories,
}

impl Encoding {
    /// The rule in a checkpoint's metadata (the dictionary values travel as tensors).
    pub fn to_json(&self) -> serde_json::Value {
        let (rule, rows) = match &self.categories {
            Categories::Dictionary(v) => ("dictionary", v.iter().map(|c| c.len() as u64).collect()),
            Categories::Modulo(rows) => ("modulo", rows.to_vec()),
        };
        serde_json::json!({
            "categorical": rule,
            "rows": rows,
            "max_ind_range": self.max_ind_range,
            "dense": DENSE_TRANSFORM,
            "unseen": "as missing (value 0)",
        })
    }

    /// The rule of [`to_json`](Self::to_json) with the dictionary `values` (needed for
    /// "dictionary"); the error names what does not fit.
    pub fn from_json(v: &serde_json::Value, values: Option<Vec<Vec<u32>>>) -> Result<Self> {
        let bad = |what: String| Error::input(None, format!("scoring metadata: {what}"));
        if v.get("dense").and_then(|d| d.as_str()) != Some(DENSE_TRANSFORM) {
            return Err(bad(format!(
                "dense transform {:?}; this ttrec knows {DENSE_TRANSFORM:?}",
                v.get("dense")
            )));
        }
        let max_ind_range = match v.get("max_ind_range") {
            None | Some(serde_json::Value::Null) => None,
            Some(r) => Some(
                r.as_u64()
                    .ok_or_else(|| bad(format!("max_ind_range {r}")))?,
            ),
        };
        let rows: Vec<u64> = v
            .get("rows")
            .and_then(|r| serde_json::from_value(r.clone()).ok())
            .filter(|r: &Vec<u64>| r.len() == NUM_SPARSE)
            .ok_or_else(|| bad(format!("rows must be {NUM_SPARSE} counts")))?;
        let categories = match v.get("categorical").and_then(|c| c.as_str()) {
            Some("dictionary") => {
                let values = values.ok_or_else(|| bad("the dictionaries are missing".into()))?;
                for (c, col) in values.iter().enumerate() {
                    if col.len() as u64 != rows[c] {
                        return Err(bad(format!(
                            "dictionary C{} holds {} values, the metadata says {}",
                            c + 1,
                            col.len(),
                            rows[c]
                        )));
                    }
                }
                Categories::Dictionary(values)
            }
            Some("modulo") => Categories::Modulo(std::array::from_fn(|c| rows[c])),
            other => return Err(bad(format!("unknown categorical rule {other:?}"))),
        };
        Ok(Encoding {
            max_ind_range,
            categories,
        })
    }

    /// Rows of each table the rule maps into.
    pub fn table_sizes(&self) -> [u64; NUM_SPARSE] {
        match &self.categories {
            Categories::Dictionary(v) => std::array::from_fn(|c| v[c].len() as u64),
            Categories::Modulo(rows) => *rows,
        }
    }

    /// The lookup structure that applies the rule (builds the dictionaries' maps).
    pub fn encoder(&self) -> Result<Encoder> {
        let maps = match &self.categories {
            Categories::Dictionary(values) => {
                let mut maps = Vec::with_capacity(NUM_SPARSE);
                for (c, col) in values.iter().enumerate() {
                    let mut m = IntHashMap::default();
                    m.reserve(col.len());
                    for (id, &v) in col.iter().enumerate() {
                        if m.insert(v, id as u32).is_some() {
                            return Err(Error::input(
                                None,
                                format!("dictionary C{} holds value {v:#x} twice", c + 1),
                            ));
                        }
                    }
                    maps.push(m);
                }
                Some(maps)
            }
            Categories::Modulo(_) => None,
        };
        let rows = self.table_sizes();
        let missing = std::array::from_fn(|c| match &maps {
            Some(m) => m[c].get(&0).copied().unwrap_or(0),
            None => 0,
        });
        Ok(Encoder {
            max_ind_range: self.max_ind_range,
            maps,
            rows,
            missing,
            unseen: [0; NUM_SPARSE],
        })
    }
}

/// [`Encoding`] ready to apply, counting unseen values per column.
#[derive(Debug)]
pub struct Encoder {
    max_ind_range: Option<u64>,
    maps: Option<Vec<IntHashMap<u32, u32>>>,
    rows: [u64; NUM_SPARSE],
    /// Per column, the id an unseen value takes (that of a missing value).
    missing: [u32; NUM_SPARSE],
    unseen: [u64; NUM_SPARSE],
}

impl Encoder {
    /// The id of categorical `value` (already `% max_ind_range` when the model uses one) in
    /// column `c`.
    #[inline]
    pub fn id(&mut self, c: usize, value: u32) -> u32 {
        match &self.maps {
            Some(maps) => match maps[c].get(&value) {
                Some(&id) => id,
                None => {
                    self.unseen[c] += 1;
                    self.missing[c]
                }
            },
            None => (value as u64 % self.rows[c].max(1)) as u32,
        }
    }

    /// A raw sample as the model's inputs: (label, dense, ids).
    pub fn encode(&mut self, s: &RawSample) -> (f32, [f32; NUM_DENSE], [u32; NUM_SPARSE]) {
        let dense = s.dense.map(dense_transform);
        let ids = std::array::from_fn(|c| {
            let v = categorical_value(s.sparse[c], self.max_ind_range);
            self.id(c, v)
        });
        (s.label as f32, dense, ids)
    }

    /// A value stored by a data store built with `store_range` (its `max_ind_range`), in the
    /// model's terms: the model's `% max_ind_range` applied when the store had none. Another
    /// range than the model's is an error (the values were folded differently).
    pub fn check_store_range(&self, store_range: Option<u64>) -> Result<()> {
        match (store_range, self.max_ind_range) {
            (a, b) if a == b => Ok(()),
            (None, Some(_)) => Ok(()),
            (a, b) => Err(Error::input(
                None,
                format!(
                    "the data store was built with max_ind_range {}, the model with {}: rebuild the store {}",
                    a.map_or("none".into(), |r| r.to_string()),
                    b.map_or("none".into(), |r| r.to_string()),
                    b.map_or("without --max-ind-range".into(), |r| format!("with --max-ind-range {r}")),
                ),
            )),
        }
    }

    /// The id of a value as a data store keeps it (the store's range having passed
    /// [`check_store_range`](Self::check_store_range)).
    #[inline]
    pub fn stored_id(&mut self, c: usize, stored_value: u32) -> u32 {
        let v = categorical_value(Some(stored_value), self.max_ind_range);
        self.id(c, v)
    }

    /// Starts the unseen counts again.
    pub fn reset_unseen(&mut self) {
        self.unseen = [0; NUM_SPARSE];
    }

    /// Values per column that the training data never held, so far.
    pub fn unseen(&self) -> [u64; NUM_SPARSE] {
        self.unseen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(sparse: [Option<u32>; NUM_SPARSE]) -> RawSample {
        RawSample {
            line: 1,
            label: 1,
            dense: [Some(3); NUM_DENSE],
            sparse,
        }
    }

    #[test]
    fn dictionaries_map_and_unseen_values_go_where_missing_ones_do() {
        let mut values = vec![vec![7u32, 0, 9]; NUM_SPARSE];
        values[1] = vec![5, 6];
        let enc = Encoding {
            max_ind_range: Some(100),
            categories: Categories::Dictionary(values),
        };
        let back = Encoding::from_json(
            &enc.to_json(),
            match &enc.categories {
                Categories::Dictionary(v) => Some(v.clone()),
                _ => None,
            },
        )
        .unwrap();
        assert_eq!(back, enc);
        let mut e = enc.encoder().unwrap();
        let mut s = [Some(9u32); NUM_SPARSE];
        s[0] = Some(107); // 107 % 100 = 7: id 0
        s[2] = Some(12345); // unseen: the id of 0, which is 1
        s[1] = Some(4); // unseen, and column 1 has no 0: id 0
        let (label, dense, ids) = e.encode(&sample(s));
        assert_eq!(label, 1.0);
        assert_eq!(dense[0], (4f64).ln() as f32);
        assert_eq!(&ids[..4], &[0, 0, 1, 2]);
        assert_eq!(e.unseen()[..4], [0, 1, 1, 0]);
        assert!(e.check_store_range(None).is_ok());
        assert!(e.check_store_range(Some(100)).is_ok());
        let err = e.check_store_range(Some(50)).unwrap_err().to_string();
        assert!(
            err.contains("50") && err.contains("--max-ind-range 100"),
            "{err}"
        );
    }

    #[test]
    fn modulo_takes_the_value_modulo_the_rows() {
        let enc = Encoding {
            max_ind_range: None,
            categories: Categories::Modulo([10; NUM_SPARSE]),
        };
        assert_eq!(Encoding::from_json(&enc.to_json(), None).unwrap(), enc);
        let mut e = enc.encoder().unwrap();
        let (_, _, ids) = e.encode(&sample([Some(123); NUM_SPARSE]));
        assert_eq!(ids, [3; NUM_SPARSE]);
        assert_eq!(e.unseen(), [0; NUM_SPARSE]);
        let mut bad = enc.to_json();
        bad["categorical"] = "dictionary".into();
        assert!(Encoding::from_json(&bad, None).is_err());
    }
}
