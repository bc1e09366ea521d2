"""Training: the ``python -m pysnn_ref.train`` command line and everything a run needs.

==================  ==========================================================================
``__main__``        the command line: flags, defaults, ``--resume``, the run configuration
``config``          RunConfig (frozen, typed, validated once) -> network, method, losses, ...
``loop``            the training loop: one step, one epoch, a whole run (+ TIT, Dspike, FDG)
``evaluate``        ``python -m pysnn_ref.evaluate``: a checkpoint's test accuracy and loss
``checkpoint``      one ``.npz`` per checkpoint: weights, optimizer state, neuron state, meta
``runlog``          the run folder, its log lines and ``metrics.jsonl``
``schema``          the run folder's format: config.json, metrics.jsonl, checkpoint meta, energy
``files``           atomic writes and the run folder's lock (one writer per run)
``flags``           settings' valid ranges, memory estimate, flags the run does not use
``plots``           the run's figures (curves, firing rates)
``distributed``     data-parallel training over MPI (gradient all-reduce, sharding)
==================  ==========================================================================
"""

__all__: list[str] = []   # the subsystems are the modules above; import them by name
