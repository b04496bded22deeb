"""The client application: `seg4reg predict` (X-ray files -> `export.prediction.Prediction` -> JSON and
overlays), `PredictClient` (TF Serving's gRPC and REST APIs), DICOM reading. It talks to a SavedModel or
a server; it does not import the server (`serving`)."""
