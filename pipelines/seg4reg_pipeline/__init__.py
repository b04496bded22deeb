"""seg4reg-tf as a TFX pipeline: fixed-split ExampleGen, curated-schema validation, Trainer `run_fn`,
evaluation with blessing, a load check in `seg4reg serve`, and an atomic push to a TF Serving base path."""

PIPELINE_NAME = "seg4reg"
# The container image the compiled Kubeflow V2 / Vertex spec runs (`seg4reg-pipeline compile --image`
# default), built from pipelines/Dockerfile by `make pipeline-image` (the Makefile reads the name here: one place).
IMAGE = "seg4reg-tf-pipeline:0.1.0"
# Where pipelines/Dockerfile puts the repository inside the image (its WORKDIR), and the curated schema there
# (the compiled spec's ImportSchemaGen reads it inside the container).
IMAGE_WORKDIR = "/seg4reg"
IMAGE_SCHEMA_FILE = "/seg4reg/pipelines/schema/schema.pbtxt"
