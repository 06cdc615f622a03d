"""Class activation maps: CAM, the Grad-CAM family, Score-CAM, Ablation-CAM, Eigen-CAM
and the guided methods. One method per module; the shared machinery is in ``base``,
``hooks``, ``layers``, ``targets``, ``maps`` and ``state``."""
