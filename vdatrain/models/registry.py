"""The model table: `model.name` in a recipe -> a constructor `(num_classes, checkpointing) -> Segmenter`.

Each model file registers its variants beside the class (`MODELS.register("deeplabv2_r101")(...)`);
`vdatrain/models/__init__.py` imports the model files so the table is full once `vdatrain.models` is.
"""

from vdatrain.registry import Registry

MODELS = Registry("model", "model.name")
