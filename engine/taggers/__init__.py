"""Taggers for `/describe`: the WD14 tagger v3 models (SmilingWolf; a `model.onnx` and a `selected_tags.csv` each)
listed from their folder (`files`), their preprocessing, thresholds and prompt text (`tags`, pure), and the networks
run by onnxruntime on the executor's worker (`run`)."""
