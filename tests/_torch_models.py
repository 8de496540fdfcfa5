"""Small torch models shaped like the reference codebases (names and module types as theirs), for the
model-layer tests. Sizes are small so every test runs in well under a second."""

import torch
from torch import nn


class Block(nn.Module):
    """nanoGPT / Hugging Face GPT-2 block names: ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj."""

    def __init__(self, d, reverse=False):
        super().__init__()
        names = ["ln_1", "attn", "ln_2", "mlp"]
        makers = {"ln_1": lambda: nn.LayerNorm(d), "ln_2": lambda: nn.LayerNorm(d),
                  "attn": lambda: nn.ModuleDict({"c_attn": nn.Linear(d, 3 * d), "c_proj": nn.Linear(d, d)}),
                  "mlp": lambda: nn.ModuleDict({"c_fc": nn.Linear(d, 4 * d), "c_proj": nn.Linear(4 * d, d)})}
        for n in reversed(names) if reverse else names:  # another construction (and registration) order
            setattr(self, n, makers[n]())


class GPT(nn.Module):
    """nanoGPT-shaped: transformer.{wte, wpe, h.N, ln_f}, lm_head tied to wte."""

    def __init__(self, vocab=96, d=32, n_layer=3, block=64, reverse=False, tie_from_head=False):
        super().__init__()
        self.transformer = nn.ModuleDict({
            "wte": nn.Embedding(vocab, d), "wpe": nn.Embedding(block, d),
            "h": nn.ModuleList([Block(d, reverse) for _ in range(n_layer)]), "ln_f": nn.LayerNorm(d)})
        self.lm_head = nn.Linear(d, vocab, bias=False)
        if tie_from_head:
            self.lm_head.weight = self.transformer.wte.weight
        else:
            self.transformer.wte.weight = self.lm_head.weight


class Rotary(nn.Module):
    """A rotary-frequency cache: a computed, non-persistent buffer with reset_buffers()."""

    def __init__(self, dim, theta=10000.0):
        super().__init__()
        self.dim, self.theta = dim, theta
        self.register_buffer("inv_freq", torch.empty(dim // 2), persistent=False)
        self.reset_buffers()

    def reset_buffers(self):
        with torch.no_grad():
            self.inv_freq.copy_(1.0 / self.theta ** (torch.arange(0, self.dim, 2, dtype=torch.float32) / self.dim))


class TitanBlock(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.attention = nn.ModuleDict({k: nn.Linear(d, d, bias=False) for k in ("wq", "wk", "wv", "wo")})
        self.feed_forward = nn.ModuleDict({"w1": nn.Linear(d, hidden, bias=False),
                                           "w2": nn.Linear(hidden, d, bias=False),
                                           "w3": nn.Linear(d, hidden, bias=False)})
        self.attention_norm = nn.RMSNorm(d)
        self.ffn_norm = nn.RMSNorm(d)


class Titan(nn.Module):
    """torchtitan Llama names: tok_embeddings, layers (ModuleDict "0".."N-1"), norm, output, rope."""

    def __init__(self, vocab=128, d=64, hidden=96, n_layers=4):
        super().__init__()
        self.tok_embeddings = nn.Embedding(vocab, d)
        self.layers = nn.ModuleDict({str(i): TitanBlock(d, hidden) for i in range(n_layers)})
        self.norm = nn.RMSNorm(d)
        self.output = nn.Linear(d, vocab, bias=False)
        self.rope = Rotary(d // 4)


class HFLlamaLayer(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.self_attn = nn.ModuleDict({k: nn.Linear(d, d, bias=False) for k in ("q_proj", "k_proj", "v_proj",
                                                                                   "o_proj")})
        self.mlp = nn.ModuleDict({"gate_proj": nn.Linear(d, hidden, bias=False),
                                  "up_proj": nn.Linear(d, hidden, bias=False),
                                  "down_proj": nn.Linear(hidden, d, bias=False)})
        self.input_layernorm = nn.RMSNorm(d)
        self.post_attention_layernorm = nn.RMSNorm(d)


class HFLlama(nn.Module):
    """Hugging Face Llama names: model.embed_tokens (padding_idx), model.layers.N, model.norm, lm_head."""

    def __init__(self, vocab=128, d=64, hidden=96, n_layers=2):
        super().__init__()
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(vocab, d, padding_idx=0)
        self.model.layers = nn.ModuleList([HFLlamaLayer(d, hidden) for _ in range(n_layers)])
        self.model.norm = nn.RMSNorm(d)
        self.model.rotary_emb = Rotary(d // 4)
        self.lm_head = nn.Linear(d, vocab, bias=False)


class BertLayer(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.attention = nn.ModuleDict({"query": nn.Linear(d, d), "key": nn.Linear(d, d), "value": nn.Linear(d, d),
                                        "dense": nn.Linear(d, d), "LayerNorm": nn.LayerNorm(d)})
        self.intermediate = nn.Linear(d, 4 * d)
        self.output = nn.ModuleDict({"dense": nn.Linear(4 * d, d), "LayerNorm": nn.LayerNorm(d)})


class Bert(nn.Module):
    def __init__(self, vocab=200, d=32, n_layers=2):
        super().__init__()
        self.embeddings = nn.ModuleDict({"word_embeddings": nn.Embedding(vocab, d, padding_idx=0),
                                         "position_embeddings": nn.Embedding(64, d),
                                         "token_type_embeddings": nn.Embedding(2, d), "LayerNorm": nn.LayerNorm(d)})
        self.encoder = nn.ModuleList([BertLayer(d) for _ in range(n_layers)])


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(48, 64, num_layers=2)
        self.gru = nn.GRU(64, 32)
        self.rnn = nn.RNN(32, 32)
        self.cell = nn.LSTMCell(32, 16)
        self.head = nn.Linear(16, 10)


class TorchZoo(nn.Module):
    """Every module whose reset_parameters the torch recipe reproduces."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(300, 32, padding_idx=5)
        self.bag = nn.EmbeddingBag(100, 16)
        self.lin = nn.Linear(128, 96)
        self.conv = nn.Conv2d(8, 32, 3)
        self.convt = nn.ConvTranspose1d(16, 24, 5)
        self.bn = nn.BatchNorm2d(32)
        self.ln = nn.LayerNorm(32)
        self.gn = nn.GroupNorm(4, 32)
        self.mha = nn.MultiheadAttention(64, 4, add_bias_kv=True)
        self.mha_kv = nn.MultiheadAttention(32, 2, kdim=16, vdim=24)
        self.lstm = nn.LSTM(32, 64)
        self.gru = nn.GRUCell(16, 32)
        self.enc = nn.TransformerEncoderLayer(64, 4, 128)
        self.tr = nn.Transformer(32, 2, 1, 1, 64, batch_first=True)


class ResBlock(nn.Module):
    """Fixup's BasicBlock names: bias1a, conv1, bias1b, bias2a, conv2, scale, bias2b."""

    def __init__(self, c):
        super().__init__()
        self.bias1a = nn.Parameter(torch.zeros(1))
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bias1b = nn.Parameter(torch.zeros(1))
        self.bias2a = nn.Parameter(torch.zeros(1))
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.scale = nn.Parameter(torch.ones(1))
        self.bias2b = nn.Parameter(torch.zeros(1))


class FixupNet(nn.Module):
    def __init__(self, c=32, n=4, classes=10):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1, bias=False)
        self.layers = nn.ModuleList([ResBlock(c) for _ in range(n)])
        self.fc = nn.Linear(c, classes)


class DeepNetLayer(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, 4)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)
        self.norm = nn.LayerNorm(d)


class DeepNet(nn.Module):
    def __init__(self, d=64, n_layers=6):
        super().__init__()
        self.embed = nn.Embedding(100, d)
        self.layers = nn.ModuleList([DeepNetLayer(d) for _ in range(n_layers)])

