use std::time::Instant;
use ttrec::graph::{Buf, GraphBuilder};
fn main() -> anyhow::Result<()> {
    let gpu = ttrec::gpu::Gpu::new()?;
    for &(groups, n) in &[(1u32, 200usize), (16, 200), (64, 200)] {
        let buf = gpu.storage("x", 1 << 20);
        let mut g = GraphBuilder::new(&gpu);
        let p = gpu.pipeline(
            "loss",
            "probabilities",
            &[("BATCH", 64.0 * groups as f64), ("LDZ", 1.0)],
        )?;
        let buf2 = gpu.storage("y", 1 << 20);
        for _ in 0..n {
            g.dispatch(
                "d",
                p.clone(),
                vec![Buf::from(&buf), Buf::from(&buf2)],
                [groups, 1, 1],
            );
        }
        let plan = g.build()?;
        plan.run()?;
        gpu.wait()?;
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            plan.run()?;
            gpu.wait()?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "{groups} workgroups: {:.1} us per dispatch",
            best / n as f64 * 1e6
        );
    }
    Ok(())
}
