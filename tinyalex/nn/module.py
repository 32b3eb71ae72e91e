"""``Module`` and ``Sequential``: parameters, sub-modules, state dicts, train/eval.

Parameters and sub-modules are registered when assigned as attributes and kept in
definition order (plain dicts), so ``named_parameters()`` and ``state_dict()`` list
them in the order a reader sees them, with PyTorch's dotted names (``0.weight``,
``features.3.bias``).
"""

from __future__ import annotations

from collections import OrderedDict, namedtuple

import numpy as np

from .. import backend as B
from .. import devices
from ..tensor import Parameter, Tensor, UninitializedParameter, no_grad

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class of every layer and network."""

    def __init__(self):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_path", "")
        object.__setattr__(self, "where", type(self).__name__)

    # -- registration ---------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {name!r} before Module.__init__() has run: "
                                 f"call super().__init__() first in "
                                 f"{type(self).__name__}.__init__")
        if isinstance(value, Parameter):
            self._modules.pop(name, None)
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._parameters.pop(name, None)
            self._modules[name] = value
            value._set_path(f"{self._path}.{name}" if self._path else name)
        elif name in self._parameters:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} to parameter "
                                f"{name!r} of {type(self).__name__}: expected a Parameter "
                                "or None")
            self._parameters[name] = None
        elif name in self._modules and value is None:
            self._modules[name] = None
        elif name in self.__dict__.get("_buffers", ()):
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign {type(value).__name__} to buffer {name!r} "
                                f"of {type(self).__name__}: expected a Tensor or None")
            self._buffers[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, tensor: "Tensor | None") -> None:
        """A tensor that is state but not a parameter (BatchNorm's running mean): in
        ``state_dict``, moved by ``to``, never given to an optimizer (as PyTorch's)."""
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"buffer name must be a non-empty string without '.', got "
                             f"{name!r}")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer({name!r}): expected a Tensor or None, got "
                            f"{type(tensor).__name__}")
        self._buffers[name] = tensor
        object.__setattr__(self, name, tensor)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        self.__setattr__(name, param)

    def add_module(self, name: str, module: "Module | None") -> None:
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"module name must be a non-empty string without '.', got "
                             f"{name!r}")
        self._modules[name] = module
        if module is not None:
            module._set_path(f"{self._path}.{name}" if self._path else name)
        object.__setattr__(self, name, module)

    def _set_path(self, path: str) -> None:
        """Record where this module sits in its network, for error messages."""
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "where", f"{type(self).__name__} layer '{path}'")
        for name, child in self._modules.items():
            if child is not None:
                child._set_path(f"{path}.{name}")

    # -- traversal ------------------------------------------------------------------
    def named_modules(self, prefix: str = ""):
        """(name, module) for this module and every descendant, depth first."""
        stack = [(prefix, self)]
        seen = set()
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{n}" if name else n, m)
                        for n, m in module._modules.items() if m is not None]
            stack.extend(reversed(children))

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        """(dotted name, parameter) in definition order; shared parameters once."""
        seen = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mname, module in modules:
            for pname, p in module._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self, recurse: bool = True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True):
        """(dotted name, buffer) in definition order (``0.running_mean``)."""
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mname, module in modules:
            for bname, b in module._buffers.items():
                if b is not None:
                    yield (f"{mname}.{bname}" if mname else bname), b

    def buffers(self, recurse: bool = True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def _named_state(self):
        """PyTorch's state_dict order: each module's parameters, then its buffers,
        module by module, depth first; shared parameters once."""
        seen = set()
        for mname, module in self.named_modules():
            for pname, p in list(module._parameters.items()) + list(module._buffers.items()):
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mname}.{pname}" if mname else pname), p

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def apply(self, fn):
        """Call ``fn(module)`` on every sub-module and then on this one (as PyTorch)."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # -- modes and devices ----------------------------------------------------------
    def train(self, mode: bool = True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def to(self, backend):
        """Move every parameter to ``backend`` ("numpy" or "cupy") or device ("cpu",
        "cuda", "cuda:0", a ``tinyalex.device``), in place. A lazy layer's parameters,
        which have no data yet, are made on the device of its first input."""
        backend = devices.backend_for(backend, f"{type(self).__name__}.to")
        for p in self.parameters():
            if isinstance(p, UninitializedParameter):
                continue
            p.array = B.to_backend(p.array, backend)
            if p.grad is not None:
                p.grad = Tensor(B.to_backend(p.grad.array, backend))
        for b in self.buffers():
            b.array = B.to_backend(b.array, backend)
        return self

    def _cast(self, dtype):
        for p in self.parameters():
            if isinstance(p, UninitializedParameter):
                continue
            p.array = p.array.astype(dtype)
            p.grad = None
        for b in self.buffers():                 # float buffers only: counts stay int64
            if b.array.dtype.kind == "f":
                b.array = b.array.astype(dtype)
        return self

    def float(self):
        return self._cast(np.float32)

    def double(self):
        return self._cast(np.float64)

    # -- state dicts ----------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, Tensor]":
        """Every parameter and buffer by dotted name (PyTorch's keys and order),
        sharing the data."""
        return OrderedDict((name, p.detach()) for name, p in self._named_state())

    def load_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Copy values into the parameters, after checking every key and shape.

        Values may be Tensors or NumPy/CuPy arrays; they are converted to each
        parameter's dtype and backend. With ``strict`` (the default), any missing or
        unexpected key is an error; a shape mismatch always is. The error lists every
        problem at once, and no parameter changes unless all checks pass.
        """
        if not hasattr(state_dict, "items"):
            raise TypeError(f"load_state_dict expects a mapping of names to arrays, got "
                            f"{type(state_dict).__name__}")
        own = OrderedDict(self._named_state())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        problems, values = [], {}
        for name, p in own.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            value = value.array if isinstance(value, Tensor) else value
            if not (isinstance(value, np.ndarray) or B.is_cupy_array(value)):
                value = np.asarray(value)
            if value.dtype.kind not in "fiu":
                problems.append(f"  {name}: dtype {value.dtype} is not numeric")
            elif tuple(value.shape) != p.shape:
                problems.append(f"  {name}: shape {tuple(value.shape)} in the state dict, "
                                f"{tuple(p.shape)} in the model")
            else:
                values[name] = value
        if strict:
            problems += [f"  missing key {k} (model expects shape {tuple(own[k].shape)})"
                         for k in missing]
            problems += [f"  unexpected key {k}" for k in unexpected]
        if problems:
            raise ValueError(f"load_state_dict into {type(self).__name__} failed:\n"
                             + "\n".join(problems))
        for name, value in values.items():
            p = own[name]
            # copied into the parameter's own memory, as PyTorch's param.copy_(value):
            # views of it (nn/flat.py's one buffer of all parameters) stay valid
            p.array[...] = B.to_backend(value, p.backend).astype(p.dtype, copy=False)
        return IncompatibleKeys(missing, unexpected)

    # -- calling --------------------------------------------------------------------
    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        children = list(self.named_children())
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, m in children:
            body = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        lines.append(")")
        return "\n".join(lines)


class Sequential(Module):
    """Modules applied in order; iterable, indexable (ints and slices) and sized.

    On the GPU (cupy backend) a layer and the ReLU after it run as one op where
    ``FUSED_PAIRS`` names the pair (``fusions``; nn/layers.py fills it in: Conv2d+ReLU,
    Linear+ReLU, the bias and ReLU in the GEMM's epilogue); on the CPU (numpy) the
    layers of a run that ``FUSED_CPU`` names (Conv2d, Sigmoid, AvgPool2d: one loop per
    image). ``net.fuse = False`` runs every layer on its own."""

    FUSED_PAIRS: dict = {}      # {(layer class, next layer class): the fused op's name}
    FUSED_CPU: dict = {}        # {(layer classes, ...): the first one's fused forward}
    fuse = True                 # run FUSED_PAIRS / FUSED_CPU as one op (forward)

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], (dict, OrderedDict)):
            items = list(modules[0].items())
        else:
            items = [(str(i), m) for i, m in enumerate(modules)]
        for name, m in items:
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: item {name!r} is a {type(m).__name__}, not a "
                                "Module")
            self.add_module(name, m)

    def forward(self, x):
        runs = self.fused_runs(getattr(x, "backend", None)) if self.fuse else {}
        layers, i = list(self._modules.values()), 0
        while i < len(layers):
            if i in runs:                    # this layer and the next, one op (fused_runs)
                _, k, run = runs[i]
                x = run(x)
                i += k
            else:
                x = layers[i](x)
                i += 1
        return x

    def fusions(self, backend: str) -> dict:
        """{index of a layer: the name of the one op that computes it and the next}."""
        return {i: name for i, (name, _, _) in self.fused_runs(backend).items()}

    def fused_runs(self, backend: str) -> dict:
        """{index of a layer: (name, k, run)}: ``run(x)`` computes layers index..
        index+k-1 as one op. On the cupy backend each pair of ``FUSED_PAIRS`` (the
        first layer's ``forward_relu``), on numpy each run of ``FUSED_CPU`` (the
        function it names, called with the run's layers); exactly those classes (a
        subclass may have its own forward)."""
        layers, found, i = list(self._modules.values()), {}, 0
        types = tuple(type(m) for m in layers)
        while i < len(layers):
            run = None
            if backend == "cupy" and i + 1 < len(layers):
                name = self.FUSED_PAIRS.get(types[i:i + 2])
                if name is not None:
                    run = (name, 2, layers[i].forward_relu)
            elif backend == "numpy":
                for classes, forward in self.FUSED_CPU.items():
                    if types[i:i + len(classes)] == classes:
                        run = ("+".join(c.__name__ for c in classes), len(classes),
                               lambda x, f=forward, ms=layers[i:i + len(classes)]:
                               f(ms[0], x, *ms[1:]))
                        break
            if run is not None:
                found[i] = run
                i += run[1]
            else:
                i += 1
        return found

    def __len__(self):
        return len(self._modules)

    def algorithms(self, input_shape, dtype=np.float32, backend="numpy") -> list:
        """``[(index, algorithm name), ...]`` for the layers that choose an algorithm
        (convolution, pooling) when the network takes inputs of ``input_shape`` on
        ``backend`` in the current kernel mode: what ``forward`` would run. The choice
        depends on the batch (Winograd pays only where a batch has enough tiles), so it
        is made for ``input_shape[0]`` images; the layers' shapes come from one zero
        image through the network (on the host, no graph)."""
        N = int(input_shape[0])
        x = Tensor(np.zeros((1,) + tuple(input_shape)[1:], dtype=dtype))
        found = []
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                for i, layer in enumerate(self._modules.values()):
                    if hasattr(layer, "algorithm"):
                        found.append((i, layer.algorithm((N,) + x.shape[1:], dtype,
                                                         backend)))
                    x = layer(x)
        finally:
            self.train(was_training)
        return found

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        layers = list(self._modules.values())
        if isinstance(index, slice):
            names = list(self._modules.keys())[index]
            return Sequential(OrderedDict((n, self._modules[n]) for n in names))
        try:
            return layers[index]
        except IndexError:
            raise IndexError(f"Sequential index {index} out of range for {len(layers)} "
                             "layers") from None
        except TypeError:
            raise TypeError(f"Sequential indices must be ints or slices, got "
                            f"{type(index).__name__}") from None

    def append(self, module: Module):
        self.add_module(str(len(self._modules)), module)
        return self
