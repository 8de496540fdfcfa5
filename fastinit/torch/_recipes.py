"""The built-in recipes: tables of :class:`Rule` (first match wins), with their sources.

Each recipe is a function of its options returning a :class:`Recipe`; :func:`recipe` looks one up by
name and checks the options. The tables are the rules of the reference implementations, written
as data (docs/model.md lists the sources).
"""

from __future__ import annotations

import inspect
import math
import re

from .._checks import InitArgumentError
from ._rules import Derived, Recipe, Rule, as_rules

__all__ = ["RECIPES", "recipe", "RESIDUAL"]

# Linear layers whose output is added to the residual stream (GPT-2's c_proj, torch's MHA
# out_proj, Hugging Face Llama's o_proj/down_proj, Meta/torchtitan Llama's wo/w2).
RESIDUAL = ("c_proj", "out_proj", "o_proj", "down_proj", "wo", "w2")

_ROOT3 = math.sqrt(5)  # torch's Linear/Conv: kaiming_uniform_(a=sqrt(5)) -> bound 1/sqrt(fan_in)


def _names_regex(names, what="weight") -> str:
    return r"(^|\.)(" + "|".join(map(re.escape, names)) + r")\." + what + "$"


def _norms() -> list:
    """Norm layers: weight 1, bias 0; BatchNorm/InstanceNorm running stats as reset_running_stats()."""
    return [
        Rule("ones_", module="*Norm*", param="weight"),
        Rule("zeros_", module="*Norm*", param="bias"),
        Rule("zeros_", module="_NormBase", param="running_mean", kind="buffer"),
        Rule("ones_", module="_NormBase", param="running_var", kind="buffer"),
        Rule("zeros_", module="_NormBase", param="num_batches_tracked", kind="buffer"),
    ]


def _recurrent_rules(forget_bias: float = 1.0) -> list:
    """weight_ih Xavier uniform, weight_hh orthogonal per gate block, biases zero, and for LSTMs
    ``forget_bias`` in the forget-gate rows of ``bias_ih`` only (``bias_hh`` stays zero, so the
    gate's total bias ``b_ih + b_hh`` is ``forget_bias``, as Keras's single ``unit_forget_bias``)."""
    rnn = ("RNNBase", "RNNCellBase")
    return [
        Rule("xavier_uniform_", module=rnn, param="weight_ih*"),
        Rule("orthogonal_", {"blocks": "gates"}, module=rnn, param="weight_hh*"),
        Rule("xavier_uniform_", module=rnn, param="weight_hr*"),
        Rule("lstm_bias_", {"forget": forget_bias}, module=rnn, param="bias_*"),
    ]


def _tail(std: float = 0.02) -> list:
    """Common practice for the other layers: embeddings N(0, std^2) (padding row zero) and norms 1/0."""
    return [Rule("normal_", {"std": std}, module=("Embedding", "EmbeddingBag"), param="weight"), *_norms()]


def torch_recipe() -> Recipe:
    """Exactly what each module's ``reset_parameters`` (and ``nn.Transformer``'s) does, name-keyed."""
    rnn = ("RNNBase", "RNNCellBase")
    rules = [
        # nn.Transformer._reset_parameters: xavier_uniform_ on every parameter with ndim > 1
        Rule("xavier_uniform_", within="Transformer", min_ndim=2, label="inside nn.Transformer, ndim>1"),
        # MultiheadAttention._reset_parameters
        Rule("xavier_uniform_", module="MultiheadAttention", param=("in_proj_weight", "?_proj_weight")),
        Rule("zeros_", module="MultiheadAttention", param="in_proj_bias"),
        Rule("xavier_normal_", module="MultiheadAttention", param=("bias_k", "bias_v")),
        Rule("zeros_", module="NonDynamicallyQuantizableLinear", param="bias",
             label="MultiheadAttention out_proj.bias"),
        # Linear / Conv*: kaiming_uniform_(a=sqrt(5)), bias U(+-1/sqrt(fan_in))
        Rule("kaiming_uniform_", {"a": _ROOT3}, module=("Linear", "_ConvNd"), param="weight"),
        Rule("bias_uniform_", module=("Linear", "_ConvNd"), param="bias"),
        Rule("normal_", module=("Embedding", "EmbeddingBag"), param="weight"),
        Rule("rnn_uniform_", module=rnn),
        *_norms(),
    ]
    return Recipe("torch", tuple(rules))


def _weights_biases(weight: Rule, conv: Rule | None = None, in_proj=None) -> list:
    """Linear (and MHA projections, Hugging Face Conv1D) weights by ``weight``; Conv weights by
    ``conv``; every bias zero."""
    w = [Rule(weight.init, weight.args, module="MultiheadAttention", param=("in_proj_weight", "?_proj_weight"))
         if in_proj is None else in_proj]
    w.append(Rule(weight.init, weight.args, module=("Linear", "Conv1D"), param="weight"))
    w.append(conv or Rule(weight.init, weight.args, module="_ConvNd", param="weight"))
    return w + [Rule("zeros_", param=("bias", "*_bias", "bias_*"), label="every bias")]


def kaiming() -> Recipe:
    """ReLU nets: Linear kaiming_normal_(fan_in, relu), Conv kaiming_normal_(fan_out, relu), biases zero."""
    lin = Rule("kaiming_normal_", {"mode": "fan_in", "nonlinearity": "relu"})
    conv = Rule("kaiming_normal_", {"mode": "fan_out", "nonlinearity": "relu"}, module="_ConvNd", param="weight")
    return Recipe("kaiming", tuple(_recurrent_rules() + _weights_biases(lin, conv) + _tail()))


def xavier(gain: float = 1.0) -> Recipe:
    """tanh/sigmoid nets: Linear and Conv xavier_uniform_(gain), biases zero."""
    return Recipe("xavier", tuple(_recurrent_rules() + _weights_biases(Rule("xavier_uniform_", {"gain": gain}))
                                  + _tail()))


def lecun() -> Recipe:
    """SELU nets: N(0, 1/fan_in), i.e. kaiming_normal_(nonlinearity="linear"), biases zero."""
    return Recipe("lecun", tuple(_recurrent_rules()
                                 + _weights_biases(Rule("kaiming_normal_", {"nonlinearity": "linear"}))
                                 + _tail()))


def recurrent(forget_bias: float = 1.0) -> Recipe:
    """RNN/LSTM/GRU by the recurrent rules; every other module as torch's recipe."""
    return Recipe("recurrent", tuple(_recurrent_rules(forget_bias) + list(torch_recipe().rules)))


def _hf(name: str, initializer_range: float, residual=None) -> Recipe:
    std = initializer_range
    rules = []
    if residual:
        rules.append(Rule("normal_", {"std": Derived(lambda t: std / math.sqrt(2 * t.n_layers),
                                                     f"{std:g}/sqrt(2*n_layers)")},
                          name=_names_regex(residual), label="residual projection"))
    rules += _weights_biases(Rule("normal_", {"std": std}))
    rules += _tail(std)
    return Recipe(name, tuple(rules))


def gpt2(initializer_range: float = 0.02, residual=RESIDUAL) -> Recipe:
    """Hugging Face GPT2PreTrainedModel._init_weights / nanoGPT: N(0, 0.02^2) for Linear, Conv1D
    and Embedding, biases zero, LayerNorm 1/0, residual projections std 0.02/sqrt(2 n_layers)."""
    return _hf("gpt2", initializer_range, tuple(residual))


def bert(initializer_range: float = 0.02) -> Recipe:
    """Hugging Face BertPreTrainedModel._init_weights: N(0, 0.02^2), biases zero, LayerNorm 1/0."""
    return _hf("bert", initializer_range)


def llama(initializer_range: float = 0.02) -> Recipe:
    """Hugging Face LlamaPreTrainedModel._init_weights: N(0, 0.02^2), no depth scaling, RMSNorm 1."""
    return _hf("llama", initializer_range)


def torchtitan_llama(depth_init: bool = True, scaled=("wo", "w2", "w3"), output: str = "output",
                     embedding: str = "tok_embeddings") -> Recipe:
    """torchtitan's Llama init_weights: trunc_normal_(std=0.02) (bounds +-2 absolute, as torchtitan
    calls it), ``scaled`` weights std 0.02/sqrt(2 (layer+1)) (``depth_init``) or
    0.02/sqrt(2 n_layers), output std dim^-1/2 truncated at +-3 std, token embedding N(0, 1)."""
    if depth_init:
        init_std = Derived(lambda t: 0.02 / math.sqrt(2 * (t.layer + 1)), "0.02/sqrt(2*(layer+1))")
    else:
        init_std = Derived(lambda t: 0.02 / math.sqrt(2 * t.n_layers), "0.02/sqrt(2*n_layers)")
    out_std = Derived(lambda t: t.fans[0] ** -0.5, "dim**-0.5")
    rules = [
        Rule("normal_", {"std": 1.0}, name=_names_regex([embedding]), label="token embedding"),
        Rule("trunc_normal_", {"std": out_std, "a": Derived(lambda t: -3 * t.fans[0] ** -0.5, "-3*dim**-0.5"),
                               "b": Derived(lambda t: 3 * t.fans[0] ** -0.5, "3*dim**-0.5")},
             name=_names_regex([output]), label="output layer"),
        Rule("trunc_normal_", {"std": init_std}, name=_names_regex(scaled), label="depth-scaled"),
        Rule("trunc_normal_", {"std": 0.02}, module="Linear", param="weight"),
        Rule("zeros_", param=("bias", "*_bias"), label="every bias"),
    ]
    return Recipe("torchtitan-llama", tuple(rules + _tail()))


_QK = ("q_proj", "k_proj", "wq", "wk", "query", "key")
_V_OUT_FFN = ("v_proj", "wv", "value", "out_proj", "o_proj", "wo", "c_proj", "fc1", "fc2", "w1", "w2", "w3",
              "up_proj", "down_proj", "gate_proj", "linear1", "linear2", "c_fc")


def deepnet() -> Recipe:
    """DeepNorm (Wang et al. 2022, encoder- or decoder-only, N layers): xavier_normal_ with gain
    beta = (8N)^(-1/4) for ffn, value and output projections, gain 1 for query/key; the residual
    scale alpha = (2N)^(1/4) is reported (it belongs to the forward pass)."""
    beta = Derived(lambda t: (8 * t.n_layers) ** -0.25, "(8*n_layers)**-0.25")
    qkv_gain = Derived(lambda t: [1.0, 1.0, (8 * t.n_layers) ** -0.25], "[1, 1, beta]")
    rules = [
        Rule("xavier_normal_", {"blocks": 3, "gain": qkv_gain}, module="MultiheadAttention", param="in_proj_weight"),
        Rule("xavier_normal_", {"gain": beta}, module="MultiheadAttention", param="v_proj_weight"),
        Rule("xavier_normal_", {"gain": 1.0}, module="MultiheadAttention", param=("q_proj_weight", "k_proj_weight")),
        Rule("xavier_normal_", {"gain": 1.0}, name=_names_regex(_QK), label="query/key"),
        Rule("xavier_normal_", {"gain": beta}, name=_names_regex(_V_OUT_FFN), label="ffn/value/output"),
        Rule("xavier_normal_", {"gain": 1.0}, module=("Linear", "Conv1D", "_ConvNd"), param="weight"),
        Rule("zeros_", param=("bias", "*_bias", "bias_*"), label="every bias"),
    ]
    return Recipe("deepnet", tuple(rules + _tail()), notes=lambda n: {"deepnorm_alpha": (2 * n()) ** 0.25,
                                                                      "deepnorm_beta": (8 * n()) ** -0.25})


def fixup(first=("conv1", "fc1", "c_fc", "linear1", "w1", "up_proj"),
          last=("conv2", "fc2", "c_proj", "linear2", "w2", "down_proj"),
          head=("fc", "head", "classifier", "lm_head", "output")) -> Recipe:
    """Fixup (Zhang et al. 2019) for residual branches of two layers, L = n_layers branches: the
    branch's first layer He-normal (fan_out, as the reference) scaled by L^(-1/2), its last layer
    zero, the classifier zero, scalar biases 0 and multipliers 1."""
    scale = Derived(lambda t: t.n_layers ** -0.5, "n_layers**-0.5")
    he = {"mode": "fan_out", "nonlinearity": "relu"}
    rules = [
        Rule("zeros_", name=r"^(" + "|".join(map(re.escape, head)) + r")\.(weight|bias)$", label="classifier"),
        Rule("zeros_", name=_names_regex(last), label="branch last layer"),
        Rule("kaiming_normal_", {**he, "scale": scale}, name=_names_regex(first), label="branch first layer"),
        Rule("kaiming_normal_", he, module=("Linear", "_ConvNd"), param="weight"),
        Rule("zeros_", param=("bias*", "*_bias"), label="biases (incl. Fixup scalar biases)"),
        Rule("ones_", param="scale*", label="Fixup multipliers"),
    ]
    return Recipe("fixup", tuple(rules + _tail()))


RECIPES = {"torch": torch_recipe, "kaiming": kaiming, "xavier": xavier, "lecun": lecun, "recurrent": recurrent,
           "gpt2": gpt2, "bert": bert, "llama": llama, "torchtitan-llama": torchtitan_llama, "deepnet": deepnet,
           "fixup": fixup}


def recipe(name: str = "torch", **options) -> Recipe:
    """The built-in recipe ``name`` with ``options`` (e.g. ``recipe("gpt2", initializer_range=0.01)``).

    Examples
    --------
    >>> from fastinit.torch import recipe
    >>> r = recipe("gpt2")
    >>> r.name, len(r.rules) > 5
    ('gpt2', True)
    >>> recipe("gpt3")
    Traceback (most recent call last):
        ...
    fastinit.InitArgumentError: recipe='gpt3' is not a recipe; use one of [...] or a list of rules
    """
    if not isinstance(name, str):
        raise TypeError(f"recipe must be a str, got {type(name).__name__}")
    if name not in RECIPES:
        raise InitArgumentError(f"recipe={name!r} is not a recipe; use one of {sorted(RECIPES)} or a list of rules")
    fn = RECIPES[name]
    bad = sorted(set(options) - set(inspect.signature(fn).parameters))
    if bad:
        raise InitArgumentError(f"recipe {name!r} has no option(s) {bad}; "
                                f"options: {list(inspect.signature(fn).parameters)}")
    r = fn(**options)
    as_rules(r.rules, f"recipe {name!r}")
    return r
