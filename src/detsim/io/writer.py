"""The interface every shower-file writer follows: append chunks, close, usable as a context manager."""

from __future__ import annotations

from detsim.showers import CaloShowers


class ShowerWriter:
    """Base of the HDF5 and ROOT writers; `n_written` counts the showers appended so far."""

    n_written: int = 0

    def append(self, chunk: CaloShowers) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> "ShowerWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
