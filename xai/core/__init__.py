"""The core every part of xai stands on; methods, metrics, Shapley games, integrations
and the command line use it, never each other's internals.

* ``errors``: the ``XAIError`` family, one per kind of bad input;
* ``validate``: option constraints declared once per class;
* ``inputs``: checking inputs, the model's device and dtype;
* ``state``: evaluation mode for the call, counted across threads;
* ``hooks``: forward hooks scoped to one call in one thread;
* ``layers``: naming a layer, with a selector for tuple/dict outputs;
* ``trace``, ``default_layer``: one recorded forward pass; the default layer, cached;
* ``reshape``: token and channels-last layers as (N, C, h, w) maps;
* ``capture``: one or several layers' outputs and gradients in one pass;
* ``targets``: what is explained, one score per row;
* ``maps``: resizing and normalising maps.

Importing ``xai.core`` imports none of these (torch loads with the first of them).
"""
