"""seg4reg-tf as a TFX pipeline: fixed-split ExampleGen, curated-schema validation, Trainer `run_fn`,
evaluation with blessing, a load check in `seg4reg serve`, and an atomic push to a TF Serving base path."""

PIPELINE_NAME = "seg4reg"
