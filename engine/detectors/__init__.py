"""Detection models for the detailer (ADetailer's `models/adetailer`): listed and checked without unpickling
(`files`), YOLOv8 rebuilt by Easel (`yolo`), run as ultralytics and ADetailer run them (`predict`), and the one-time
converter from ultralytics' `.pt` pickles (`convert`)."""
