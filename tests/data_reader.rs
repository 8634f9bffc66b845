//! The raw Criteo reader: the sample, every malformed kind, gzip, CRLF, no final newline.

mod common;
use common::{sample_path, sample_text, temp_dir};

use std::io::Write;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ttrec::data::{CriteoReader, MalformedKind, RawSample, SyntheticCriteo};

fn read_bytes(bytes: Vec<u8>) -> (Vec<RawSample>, CriteoReader) {
    let mut reader = CriteoReader::from_read("mem", std::io::Cursor::new(bytes)).unwrap();
    let mut out = Vec::new();
    while let Some(s) = reader.next_sample().unwrap() {
        out.push(s);
    }
    (out, reader)
}

/// An independent parse with str APIs, to compare the byte-level reader against.
fn naive(line: &str, line_no: u64) -> RawSample {
    let f: Vec<&str> = line.split('\t').collect();
    assert_eq!(f.len(), 40);
    RawSample {
        line: line_no,
        label: f[0].parse().unwrap(),
        dense: std::array::from_fn(|j| (!f[1 + j].is_empty()).then(|| f[1 + j].parse().unwrap())),
        sparse: std::array::from_fn(|c| {
            (!f[14 + c].is_empty()).then(|| u32::from_str_radix(f[14 + c], 16).unwrap())
        }),
    }
}

#[test]
fn the_sample_parses_like_a_naive_reader() {
    let text = sample_text();
    let samples: Vec<RawSample> = CriteoReader::open(sample_path())
        .unwrap()
        .map(|s| s.unwrap())
        .collect();
    assert_eq!(samples.len(), 200);
    for (i, (s, line)) in samples.iter().zip(text.lines()).enumerate() {
        assert_eq!(*s, naive(line, i as u64 + 1), "line {}", i + 1);
    }
    assert_eq!(samples.iter().filter(|s| s.label == 1).count(), 44);
    // Line 1 by hand: I12 is empty, C22 is empty.
    assert_eq!(samples[0].dense[4], Some(1382));
    assert_eq!(samples[0].dense[11], None);
    assert_eq!(samples[0].sparse[0], Some(0x68fd1e64));
    assert_eq!(samples[0].sparse[21], None);
}

#[test]
fn every_malformed_kind_is_skipped_counted_and_located() {
    let text = sample_text();
    let mut lines: Vec<String> = text.lines().take(20).map(str::to_string).collect();
    let set_field = |line: &str, i: usize, v: &str| {
        let mut f: Vec<&str> = line.split('\t').collect();
        f[i] = v;
        f.join("\t")
    };
    lines[1] = lines[1].rsplit_once('\t').unwrap().0.to_string(); // 39 fields
    lines[3] = format!("{}\textra", lines[3]); // 41 fields
    lines[4] = set_field(&lines[4], 3, "1.5"); // I3
    lines[6] = set_field(&lines[6], 13, "x"); // I13
    lines[7] = set_field(&lines[7], 14 + 4, "zz000000"); // C5
    lines[9] = set_field(&lines[9], 14 + 25, "123456789"); // C26, 9 digits
    lines[10] = set_field(&lines[10], 0, "2");
    lines[12] = set_field(&lines[12], 0, "");
    lines[13] = String::new(); // blank line: 1 field
    let (samples, reader) = read_bytes((lines.join("\n") + "\n").into_bytes());
    let stats = reader.stats();
    assert_eq!(stats.lines, 20);
    assert_eq!(stats.valid, 11);
    assert_eq!(samples.len(), 11);
    let lines_of = |k| {
        stats
            .examples_of(k)
            .iter()
            .map(|m| m.line)
            .collect::<Vec<_>>()
    };
    assert_eq!(stats.count(MalformedKind::FieldCount), 3);
    assert_eq!(lines_of(MalformedKind::FieldCount), [2, 4, 14]);
    assert_eq!(lines_of(MalformedKind::BadInteger), [5, 7]);
    assert_eq!(lines_of(MalformedKind::BadHex), [8, 10]);
    assert_eq!(lines_of(MalformedKind::BadLabel), [11, 13]);
    let bad_int = &stats.examples_of(MalformedKind::BadInteger)[0];
    assert_eq!((bad_int.column, bad_int.value.as_str()), (Some(3), "1.5"));
    assert_eq!(bad_int.to_string(), "line 5 column 4 (I3): \"1.5\"");
    let bad_hex = &stats.examples_of(MalformedKind::BadHex)[1];
    assert_eq!(
        (bad_hex.column, bad_hex.value.as_str()),
        (Some(39), "123456789")
    );
    assert!(stats.examples_of(MalformedKind::FieldCount)[0]
        .to_string()
        .contains("39 fields"));
    // The valid lines are the untouched ones, with their own line numbers.
    let kept: Vec<u64> = samples.iter().map(|s| s.line).collect();
    assert_eq!(kept, [1, 3, 6, 9, 12, 15, 16, 17, 18, 19, 20]);
}

#[test]
fn mostly_malformed_input_is_an_error_naming_the_counts() {
    let text = sample_text();
    let good: Vec<&str> = text.lines().take(3).collect();
    let mut body = good.join("\n");
    body.push_str("\nnot\ta\tcriteo\tline\n1,2,3\nhello\n2\n9\n");
    let mut reader =
        CriteoReader::from_read("junk.txt", std::io::Cursor::new(body.into_bytes())).unwrap();
    let items: Vec<_> = reader.by_ref().collect();
    let err = items.last().unwrap().as_ref().unwrap_err().to_string();
    assert_eq!(items.iter().filter(|i| i.is_ok()).count(), 3);
    assert!(
        err.contains("junk.txt") && err.contains("5 of 8 lines are malformed"),
        "{err}"
    );
    assert!(
        err.contains("field_count: 5 (first at lines 4, 5, 6, 7, 8"),
        "{err}"
    );
    // Exactly half malformed is still accepted.
    let body = format!("{}\n{}\nx\ny\n", good[0], good[1]);
    let (samples, _) = read_bytes(body.into_bytes());
    assert_eq!(samples.len(), 2);
}

#[test]
fn crlf_missing_final_newline_and_gzip_read_the_same() {
    let text = sample_text();
    let (plain, _) = read_bytes(text.clone().into_bytes());
    let crlf = text.replace('\n', "\r\n");
    let (from_crlf, _) = read_bytes(crlf.trim_end().as_bytes().to_vec());
    assert_eq!(from_crlf, plain);
    let (no_final, _) = read_bytes(text.trim_end_matches('\n').as_bytes().to_vec());
    assert_eq!(no_final, plain);

    let dir = temp_dir("gzip");
    let path = dir.join("sample.gz-without-extension");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::default(),
    );
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap();
    let from_gz: Vec<RawSample> = CriteoReader::open(&path)
        .unwrap()
        .map(|s| s.unwrap())
        .collect();
    assert_eq!(from_gz, plain);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn random_corruptions_are_counted_exactly() {
    let synth = SyntheticCriteo::new(11, 0.001).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut expect = [0u64; 4];
    let mut body = Vec::new();
    let n = 3000;
    for i in 0..n {
        let mut line = Vec::new();
        synth.write_line(i, &mut line).unwrap();
        let mut fields: Vec<String> = String::from_utf8(line)
            .unwrap()
            .trim_end_matches('\n')
            .split('\t')
            .map(String::from)
            .collect();
        match rng.random_range(0..10) {
            0 => {
                fields.pop();
                expect[0] += 1;
            }
            1 => {
                fields[rng.random_range(1..14)] = "-".into();
                expect[1] += 1;
            }
            2 => {
                fields[rng.random_range(14..40)] = "0x12".into();
                expect[2] += 1;
            }
            3 => {
                fields[0] = "01".into();
                expect[3] += 1;
            }
            _ => {}
        }
        body.extend_from_slice(fields.join("\t").as_bytes());
        body.extend_from_slice(if rng.random_bool(0.5) { b"\r\n" } else { b"\n" });
    }
    let (samples, reader) = read_bytes(body);
    assert_eq!(reader.stats().malformed, expect);
    assert_eq!(samples.len() as u64 + expect.iter().sum::<u64>(), n);
    for s in &samples {
        assert_eq!(s.label, synth.sample(s.line - 1).label, "line {}", s.line);
        assert_eq!(
            s.dense,
            synth.sample(s.line - 1).dense_raw,
            "line {}",
            s.line
        );
    }
}

#[test]
fn an_overlong_line_is_skipped_without_being_kept() {
    let text = sample_text();
    let good: Vec<&str> = text.lines().take(3).collect();
    let huge = "7\t".repeat(200_000); // 400 KB, no newline until the end
    let body = format!("{}\n{huge}\n{}\n{}", good[0], good[1], good[2]);
    let (samples, reader) = read_bytes(body.into_bytes());
    assert_eq!(
        samples.iter().map(|s| s.line).collect::<Vec<_>>(),
        [1, 3, 4]
    );
    let m = &reader.stats().examples_of(MalformedKind::FieldCount)[0];
    assert_eq!(m.line, 2);
    assert!(
        m.to_string().contains("longer than the 65536-byte limit"),
        "{m}"
    );
}

#[test]
fn open_missing_file_names_it() {
    let err = CriteoReader::open("/nonexistent/criteo.txt")
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/criteo.txt"), "{err}");
}
