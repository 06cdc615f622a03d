"""What to explain, as objects: ``target=xai.targets.Segmentation(1, mask)``.

* ``Class(c)``: a class's score (an int does the same);
* ``Segmentation(category, mask)``: a segmentation model's score for a category summed
  over a mask, shared or one per sample;
* ``Box(box, category)``: a detection model's score for the detection matching a box;
* ``Similarity(embedding)``: an embedding model's cosine similarity to a reference;
* ``Target``: the base class, for your own score.

Each is given for all samples, or as a list with one target per sample. A target knows
which sample each row of the model's output belongs to, so methods that score many
masked copies in mixed chunks (Score-CAM, Ablation-CAM) give the same maps as
explaining each image alone.
"""

from xai.core.targets import Class, Target, logits_of
from xai.targets.box import Box
from xai.targets.segmentation import Segmentation
from xai.targets.similarity import Similarity

__all__ = ["Box", "Class", "Segmentation", "Similarity", "Target", "logits_of"]
