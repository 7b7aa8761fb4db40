"""One file per method: each turns a model into per-channel (or per-weight) importance scores,
and plugs into the shared path scores -> selection (:mod:`pruning.select`) -> removal
(:mod:`pruning.surgery`) -> fine-tuning (:mod:`pruning.train`) -> measurement (:mod:`pruning.measure`)."""
