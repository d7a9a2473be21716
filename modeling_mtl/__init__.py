"""modeling_mtl: a Hugging Face-native multi-task sentence transformer.

One shared encoder pass gives sentence embeddings, a sentence label and BIO entities. Saved folders carry their
own code, so `AutoModel.from_pretrained(folder, trust_remote_code=True)` loads them without this package.
"""

from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoModelForTokenClassification

from .configuration_mtl import MultiTaskConfig
from .decoding_mtl import bio_to_entities, split_words
from .encoders import shipped_minilm
from .modeling_mtl import (
    DEFAULT_ENCODER,
    ENCODER_RESOLVERS,
    MultiTaskForSequenceClassification,
    MultiTaskForTokenClassification,
    MultiTaskModel,
    MultiTaskModelOutput,
)

__version__ = "0.1.0"

ENCODER_RESOLVERS[DEFAULT_ENCODER] = shipped_minilm

# With the package installed, the Auto classes know the model type without remote code.
AutoConfig.register(MultiTaskConfig.model_type, MultiTaskConfig, exist_ok=True)
AutoModel.register(MultiTaskConfig, MultiTaskModel, exist_ok=True)
AutoModelForSequenceClassification.register(MultiTaskConfig, MultiTaskForSequenceClassification, exist_ok=True)
AutoModelForTokenClassification.register(MultiTaskConfig, MultiTaskForTokenClassification, exist_ok=True)

__all__ = [
    "DEFAULT_ENCODER",
    "MultiTaskConfig",
    "MultiTaskModel",
    "MultiTaskForSequenceClassification",
    "MultiTaskForTokenClassification",
    "MultiTaskModelOutput",
    "bio_to_entities",
    "split_words",
]
