"""The MiniLM encoder on ONNX Runtime: the BERT graph written out from the safetensors weights.

The numpy forward pass (:mod:`corpusmill.dataprep.minilm`) is the reference; this is the same
arithmetic as one ONNX graph, built here with the ``onnx`` package's helpers from the weights
(no torch, no export step, nothing cached on disk) and run by ONNX Runtime's fused CPU kernels:
``Attention`` (Q, K, V in one GEMM, masked softmax, per-head products), ``SkipLayerNormalization``
(residual + bias + LayerNorm), ``BiasGelu`` (erf GELU). Mean pooling and L2 normalisation are the
reference's own numpy code, applied to the graph's last hidden layer.

``precision="int8"`` quantises the dense layers' weights to int8 after the graph is built
(ONNX Runtime's dynamic quantisation: activations quantised per call, per tensor). It is faster
and moves vectors by up to ~2.5e-2 in cosine; because an activation's scale is taken over the whole
tensor of a call, the encoder then runs every text on its own, so a text's vector still does not
depend on its neighbours (docs/domain-selection.md, "Embedding runtime").
"""

from __future__ import annotations

import logging

import numpy as np

from corpusmill.errors import ConfigError

#: the opset of the standard operators (LayerNormalization needs 17) and Microsoft's contrib ops
OPSET = 17
MS_DOMAIN = "com.microsoft"


def _need_onnx():
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise ConfigError([
            "embedding.runtime onnxruntime needs onnxruntime and onnx: pip install 'corpusmill[select-embedding]' "
            "(or set embedding.runtime: numpy, about 2x slower)"
        ]) from None
    return onnx, onnxruntime


def build_bert_graph(w: dict[str, np.ndarray], *, layers: int, heads: int, eps: float, max_tokens: int):
    """An ONNX ModelProto of the sentence encoder: inputs ``input_ids`` and ``attention_mask``
    (int64, batch x tokens), output ``hidden`` (float32, batch x tokens x hidden: the last layer).
    Pooling is left to numpy (:func:`~corpusmill.dataprep.minilm.mean_pool`): ONNX Runtime's
    ReduceSum takes another path for a batch of one, which moved a vector by 1 ulp. ``w`` holds the BERT tensors as named in the safetensors file
    without the ``bert.`` prefix, dense weights as stored ([out, in])."""
    onnx, _ = _need_onnx()
    from onnx import TensorProto, helper, numpy_helper

    inits, nodes = [], []

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(op: str, inputs: list[str], output: str, domain: str = "", **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, domain=domain, **attrs))
        return output

    f32 = np.float32
    D = w["embeddings.word_embeddings.weight"].shape[1]
    # embeddings: word + position + token type 0 (every token is segment A), then LayerNorm
    const("word_emb", w["embeddings.word_embeddings.weight"].astype(f32))
    const("pos_type_emb", (w["embeddings.position_embeddings.weight"][:max_tokens]
                           + w["embeddings.token_type_embeddings.weight"][0]).astype(f32))
    node("Shape", ["input_ids"], "seq_len", start=1, end=2)
    const("zero", np.array([0], np.int64))
    node("Slice", ["pos_type_emb", "zero", "seq_len", "zero"], "pos")
    node("Gather", ["word_emb", "input_ids"], "words")
    node("Add", ["words", "pos"], "emb")
    x = node("LayerNormalization", ["emb", const("emb_ln_w", w["embeddings.LayerNorm.weight"].astype(f32)),
                                    const("emb_ln_b", w["embeddings.LayerNorm.bias"].astype(f32))],
             "x0", axis=-1, epsilon=eps)
    node("Cast", ["attention_mask"], "mask_i32", to=TensorProto.INT32)
    for i in range(layers):
        p = f"encoder.layer.{i}."

        def t(name):  # a dense weight as x @ W.T wants it: [in, out]
            return w[p + name + ".weight"].astype(f32).T

        qkv_w = np.concatenate([t("attention.self.query"), t("attention.self.key"), t("attention.self.value")], axis=1)
        qkv_b = np.concatenate([w[p + f"attention.self.{k}.bias"] for k in ("query", "key", "value")]).astype(f32)
        ctx = node("Attention", [x, const(f"l{i}_qkv_w", qkv_w), const(f"l{i}_qkv_b", qkv_b), "mask_i32"],
                   f"l{i}_ctx", domain=MS_DOMAIN, num_heads=heads)
        y = node("MatMul", [ctx, const(f"l{i}_ao_w", t("attention.output.dense"))], f"l{i}_ao")
        x = node("SkipLayerNormalization",
                 [y, x, const(f"l{i}_ln1_w", w[p + "attention.output.LayerNorm.weight"].astype(f32)),
                  const(f"l{i}_ln1_b", w[p + "attention.output.LayerNorm.bias"].astype(f32)),
                  const(f"l{i}_ao_b", w[p + "attention.output.dense.bias"].astype(f32))],
                 f"l{i}_x1", domain=MS_DOMAIN, epsilon=eps)
        h = node("MatMul", [x, const(f"l{i}_in_w", t("intermediate.dense"))], f"l{i}_in")
        h = node("BiasGelu", [h, const(f"l{i}_in_b", w[p + "intermediate.dense.bias"].astype(f32))], f"l{i}_gelu",
                 domain=MS_DOMAIN)
        y = node("MatMul", [h, const(f"l{i}_out_w", t("output.dense"))], f"l{i}_out")
        x = node("SkipLayerNormalization",
                 [y, x, const(f"l{i}_ln2_w", w[p + "output.LayerNorm.weight"].astype(f32)),
                  const(f"l{i}_ln2_b", w[p + "output.LayerNorm.bias"].astype(f32)),
                  const(f"l{i}_out_b", w[p + "output.dense.bias"].astype(f32))],
                 "hidden" if i == layers - 1 else f"l{i}_x2", domain=MS_DOMAIN, epsilon=eps)
    graph = helper.make_graph(
        nodes, "sentence_encoder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"])],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "tokens", D])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)],
                              producer_name="corpusmill")
    model.ir_version = 8  # accepted by every onnxruntime >= 1.14
    return model


def quantize_int8(model):
    """The model with its MatMul and Attention weights quantised to int8 (ONNX Runtime's dynamic
    quantisation, per-channel weights, uint8 activations: the u8s8 kernels VNNI CPUs run fast)."""
    import tempfile
    from pathlib import Path

    onnx, _ = _need_onnx()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="corpusmill-minilm-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(src))
        logging.disable(logging.WARNING)  # its advice to run a pre-processing script, at every start
        try:
            quantize_dynamic(str(src), str(dst), op_types_to_quantize=["MatMul", "Attention"], per_channel=True,
                             weight_type=QuantType.QInt8,
                             # the contrib ops' outputs have no inferred type: they are float32
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        finally:
            logging.disable(logging.NOTSET)
        return onnx.load(str(dst))


class OnnxBert:
    """The BERT forward pass on an ONNX Runtime session: ``forward(ids, mask)`` -> sentence vectors."""

    def __init__(self, w: dict[str, np.ndarray], *, layers: int, heads: int, eps: float, max_tokens: int,
                 precision: str = "fp32", threads: int = 1) -> None:
        _, ort = _need_onnx()
        model = build_bert_graph(w, layers=layers, heads=heads, eps=eps, max_tokens=max_tokens)
        if precision == "int8":
            model = quantize_int8(model)
        elif precision != "fp32":
            raise ConfigError([f"embedding.precision {precision!r}: use fp32 or int8"])
        self.precision = precision
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads  # 0 = one per core (ONNX Runtime's default)
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.use_deterministic_compute = True
        so.log_severity_level = 3
        self.session = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])

    def forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        from corpusmill.dataprep.minilm import mean_pool

        mask = mask.astype(np.int64, copy=False)
        hidden = self.session.run(["hidden"], {"input_ids": ids.astype(np.int64, copy=False), "attention_mask": mask})[0]
        return mean_pool(hidden, mask)
