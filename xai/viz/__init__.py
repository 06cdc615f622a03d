"""Pictures, drawn with matplotlib's Agg backend (no display needed), imported lazily.

Submodules (import them by name; ``import xai.viz`` loads neither matplotlib nor OpenCV):

- ``xai.viz.overlay``: ``colormaps``, ``colorize``, ``to_rgb``, ``overlay``: maps as
  RGB ``uint8`` heat maps blended over their images.
- ``xai.viz.grids``: ``method_grid`` (one image, several methods), ``class_grid`` (one
  example per class with its maps) and ``save_figure``.
- ``xai.viz.shapley``: ``waterfall`` and ``bar`` charts of a ``ShapleyResult``.
- ``xai.viz.training``: training curves and confusion matrices.
"""
