"""Data: datasets, event recordings, mini-batches and spike encoders.

==================  ==========================================================================
``datasets``        :func:`load_dataset` (digits, MNIST, Fashion-MNIST, CIFAR-10, npz, N-MNIST,
                    digits-rows) into a :class:`Dataset`; IDX / CIFAR / npz readers
``events``          event-camera recordings (N-MNIST): decoding, framing by time or count
``batches``         :func:`iterate_minibatches`, :func:`augment_cifar`
``encoders``        direct, Poisson, event and sequence encoders: ``(B, ...)`` -> ``(T, B, ...)``
``fetch``           :func:`download`: MNIST, Fashion-MNIST, CIFAR-10, N-MNIST, checksummed
==================  ==========================================================================
"""

from __future__ import annotations

from .batches import augment_cifar, iterate_minibatches
from .datasets import DATASETS, Dataset, load_dataset, read_idx, split_indices
from .encoders import (
    ENCODERS,
    TIME_ENCODERS,
    DirectEncoder,
    Encoder,
    EventEncoder,
    PoissonEncoder,
    SequenceEncoder,
    check_encoder,
    make_encoder,
)
from .fetch import DOWNLOADABLE, DownloadError, download

__all__ = ["DATASETS", "ENCODERS", "Dataset", "load_dataset", "split_indices", "read_idx",
           "iterate_minibatches", "augment_cifar", "Encoder", "DirectEncoder", "PoissonEncoder",
           "EventEncoder", "SequenceEncoder", "TIME_ENCODERS", "check_encoder", "make_encoder",
           "DOWNLOADABLE", "DownloadError", "download"]
