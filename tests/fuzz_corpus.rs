//! Every input of the fuzz corpus (`fuzz/corpus/<target>/`, grown by `fuzz/run.sh`, with the
//! inputs of past findings among them) replayed through the same checks the fuzz targets make,
//! so CI runs them without a fuzzer.

#[path = "../fuzz/harness.rs"]
mod harness;

#[test]
fn the_fuzz_corpus_passes_every_target() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for target in harness::TARGETS {
        let dir = root.join(target);
        let mut inputs = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| harness::run(target, &data));
            assert!(outcome.is_ok(), "{target}: {} fails", path.display());
            inputs += 1;
        }
        assert!(
            inputs >= 3,
            "{target}: only {inputs} inputs in {}",
            dir.display()
        );
    }
}
