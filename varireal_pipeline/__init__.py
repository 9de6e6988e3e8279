"""The pipeline around the `varireal` library: what knows about DVC, MLflow and the project's folders.

- `stages/`: one module per dvc.yaml stage (`varireal_pipeline/stages/<stage>.py` runs `varireal <stage>`),
  each a thin `main(params_path)` that reads its deps, calls the library and writes its outs;
- `cli.py`: the `varireal` command; `tracking.py`: MLflow runs and the DVC facts they record;
  `profiles.py`: the paper's setups as `dvc exp run -S` overrides; `eval_runs.py`: the eval run that the
  eval stage writes and the report reads; `report/`: the report from MLflow.

The library (`varireal`) never imports this package (tests/test_architecture.py checks it).
"""
