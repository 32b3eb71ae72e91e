"""d2l 1.0's two small helpers of its object design: ``add_to_class`` and
``HyperParameters.save_hyperparameters``."""

from __future__ import annotations

import inspect
import sys


def add_to_class(Class):  # noqa: N803 - d2l's name
    """A decorator that sets the decorated function as a method of ``Class``, so that
    a chapter can add methods to a class defined earlier (``@d2l.add_to_class(C)``)."""
    def register(function):
        setattr(Class, function.__name__, function)
    return register


class HyperParameters:
    """Base class whose ``save_hyperparameters()`` keeps ``__init__``'s arguments."""

    def save_hyperparameters(self, ignore=()):
        """Set every argument of the calling function (``__init__``, as a rule) as an
        attribute of ``self`` and collect them in ``self.hparams``; ``self``, names in
        ``ignore`` and names starting with ``_`` are left out."""
        caller = sys._getframe(1)
        info = inspect.getargvalues(caller)
        names = list(info.args)
        for extra in (info.varargs, info.keywords):
            if extra:
                names.append(extra)
        skip = set(ignore) | {"self"}
        self.hparams = {name: info.locals[name] for name in names
                        if name not in skip and not name.startswith("_")}
        for name, value in self.hparams.items():
            setattr(self, name, value)
