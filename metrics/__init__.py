"""ARO's measuring side: `scoring/`, the scoring library behind `aro eval` and `aro retrieval` (load any supported
model, score ARO items, report with intervals and Hub files), and `aro_accuracy/`, the `evaluate` module published
as a Space (numpy only; it scores a model through the library when `aro` is installed). `cli.py` holds `aro eval`
and `aro push-metric`."""
