"""Running a tagger on the executor's worker: onnxruntime sessions kept per tagger (its CUDA provider where the GPU
build is installed and the worker has a GPU), the image prepared and the outputs read as the reference does."""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from engine.taggers.description import Description
from engine.taggers.files import MODEL_FILE, TaggerFile, TaggerLibrary, load_labels
from engine.taggers.tags import Labels, describe, prepare

log = logging.getLogger(__name__)


class TaggerModels:
    """Loaded taggers (a session and its labels), the last few used, reloaded when the model file changes."""

    def __init__(self, library: TaggerLibrary, device: str, keep: int = 2) -> None:
        self.library = library
        self.device = device
        self.keep = keep
        self._loaded: OrderedDict[tuple[Path, float], tuple[Any, Labels]] = OrderedDict()

    def _session(self, tagger: TaggerFile) -> tuple[Any, Labels]:
        model = tagger.path / MODEL_FILE
        key = (model, model.stat().st_mtime)
        if key not in self._loaded:
            import onnxruntime

            available = onnxruntime.get_available_providers()
            gpu = self.device.startswith("cuda") and "CUDAExecutionProvider" in available
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if gpu else ["CPUExecutionProvider"]
            log.info("loading tagger %s (%s)", tagger.name, providers[0])
            self._loaded[key] = (
                onnxruntime.InferenceSession(str(model), providers=providers),
                load_labels(tagger.path),
            )
            while len(self._loaded) > self.keep:
                self._loaded.popitem(last=False)
        self._loaded.move_to_end(key)
        return self._loaded[key]

    def describe(self, name: str, image: Image.Image, general: float = 0.0, character: float = 0.0) -> Description:
        """The tagger's description of `image`; a threshold of 0 takes the tagger's own."""
        tagger = self.library.resolve(name)
        session, labels = self._session(tagger)
        tensor = prepare(image, tagger.side)
        [probabilities] = session.run(None, {session.get_inputs()[0].name: tensor})[:1]
        return describe(
            np.asarray(probabilities)[0],
            labels,
            general=general or tagger.general,
            character=character or tagger.character,
            tagger=tagger.name,
        )
