"""pruning - the package behind the open course on neural-network pruning.

The common path every method follows, one module per step::

    data, models, zoo      what to prune: datasets, architectures, pretrained baselines
    methods/               1. scores      - one file per paper (and the PFEC / random baselines)
    select                 2. selection   - ratio, threshold or MACs budget -> channels to keep
    surgery                3. removal     - masks (torch.nn.utils.prune) or channel surgery
    train                  4. repair      - BN recalibration and fine-tuning
    measure                5. measurement - MACs/FLOPs, parameters, latency, sparsity
    pipeline               steps 3-5 as one call, the same budget for every selection

plus ``supermask`` (frozen random weights with a learned mask, for paper 5), ``budget`` (every method at one
MACs budget, for the capstone), ``digits`` and ``detector`` (a detection set from MNIST and a small Faster
R-CNN, for paper 3 at detection scale), ``stats`` (intervals over seeds, McNemar and bootstrap tests within a
run), ``deploy`` (save and reload a pruned model, ONNX export and ONNX Runtime), and ``plots``, ``widgets``,
``selfcheck`` and ``checks`` for the notebooks. Two tools sit beside the engine:
``python -m pruning.reproduce`` (reference runs of the notebooks over seeds) and ``python -m pruning.report``
(the evidence over those runs, and the README's tables).
"""

__version__ = "0.1.0"
