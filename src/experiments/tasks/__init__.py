"""One object per task, used by both modes: ``infer`` runs it (pipeline or by hand) and ``train`` fine-tunes
it (model class, preprocessing, collator, metrics, post-processing). Adding a task is adding one class here
and registering it in :mod:`experiments.tasks.registry` (plus ``conf/task/<name>.yaml``)."""
