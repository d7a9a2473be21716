"""The measured sections of benchmarks/speed.py, one module each, and the helpers they share.

    common                shared: paths, the data readers, the models and pipelines, timing (timed, interleave,
                          paired_ratio) and the machine / code facts of the report
    predict_vs_pipelines  a: `predict` vs the text- and token-classification pipelines, and how far they agree
    encode_vs_st          b: `encode` vs `SentenceTransformer.encode`
    training              c: `MultiTaskTrainer` vs a plain `Trainer`, samples/s
    memory                d: peak memory, one fresh `speed.py --memory-worker` process per variant and batch size
    flops                 e: achieved FLOP/s of the encoder against this machine's matmul peak
    profiling             p: where `predict` and `encode` spend their time, and what padding costs
    variants              --bf16 / --compile: bf16 autocast and a compiled encoder against fp32

benchmarks/speed.py is the command line: it runs the sections asked for and writes the report. A new measurement is a
new module here with a `section_<name>(args, ...)` that returns its JSON, called from speed.py's `main`.
"""
