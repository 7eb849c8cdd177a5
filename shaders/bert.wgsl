// The non-matmul operations of a BERT encoder (all-MiniLM-L6-v2 and its kind), for the example
// forward pass in src/gpu/bert.rs; the matrix products are vramzip's own (gemv.wgsl, fused.wgsl).
// Activations are f32, `tokens` rows of `hidden` values. Every reduction runs in a fixed order,
// so a forward pass gives the same bits every time, and the same bits whether its weights were
// compressed or not. One entry point per operation, all on one bind group layout; an entry
// ignores the bindings it does not use.

struct Params {
    tokens: u32,
    hidden: u32,
    heads: u32,
    head_dim: u32,
    width: u32,      // bias_act: values per token
    act: u32,        // bias_act: 0 none, 1 GELU
    dtype: u32,      // embed: the tables' type (0 f32, 1 bf16, 2 f16)
    eps: f32,        // LayerNorm epsilon
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> table: array<u32>;    // embedding rows (packed dtype)
@group(0) @binding(2) var<storage, read> rows: array<u32>;     // per token: first element of its word, position and token-type rows in `table`
@group(0) @binding(3) var<storage, read> param: array<f32>;    // bias, or LayerNorm gamma then beta
@group(0) @binding(4) var<storage, read> src: array<f32>;      // an input activation
@group(0) @binding(5) var<storage, read_write> dst: array<f32>; // the output (also read)

const THREADS: u32 = 64u;
const MAX_HIDDEN: u32 = 1024u;
const MAX_TOKENS: u32 = 512u;

var<workgroup> row: array<f32, MAX_HIDDEN>;
var<workgroup> scratch: array<f32, MAX_TOKENS>;

// Element `i` of the packed tables, as f32.
fn table_value(i: u32) -> f32 {
    if (p.dtype == 0u) {
        return bitcast<f32>(table[i]);
    }
    let half = (table[i / 2u] >> ((i & 1u) * 16u)) & 0xffffu;
    if (p.dtype == 1u) {
        return bitcast<f32>(half << 16u);
    }
    return f16_bits_to_f32(half);
}

// Sum of scratch[0..n], by thread 0 in index order, shared with every thread.
fn ordered_sum(t: u32, n: u32) -> f32 {
    workgroupBarrier();
    if (t == 0u) {
        var s = 0.0;
        for (var i = 0u; i < n; i++) {
            s += scratch[i];
        }
        scratch[0] = s;
    }
    workgroupBarrier();
    let s = scratch[0];
    workgroupBarrier();
    return s;
}

// LayerNorm of `row` (hidden values) into dst[token], with gamma and beta from `param`. The
// sums run per thread over a fixed stride, then in thread order.
fn layer_norm(t: u32, token: u32) {
    let h = min(p.hidden, MAX_HIDDEN);
    var s = 0.0;
    for (var c = t; c < h; c += THREADS) {
        s += row[c];
    }
    scratch[t] = s;
    let mean = ordered_sum(t, THREADS) / f32(h);
    var v = 0.0;
    for (var c = t; c < h; c += THREADS) {
        let d = row[c] - mean;
        v += d * d;
    }
    scratch[t] = v;
    let inv = 1.0 / sqrt(ordered_sum(t, THREADS) / f32(h) + p.eps);
    for (var c = t; c < h; c += THREADS) {
        dst[token * h + c] = (row[c] - mean) * inv * param[c] + param[h + c];
    }
}

// Word + token type + position embeddings, then LayerNorm. One workgroup a token.
@compute @workgroup_size(64)
fn embed(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let token = wid.x;
    let h = min(p.hidden, MAX_HIDDEN);
    let word = rows[3u * token];
    let position = rows[3u * token + 1u];
    let token_type = rows[3u * token + 2u];
    for (var c = t; c < h; c += THREADS) {
        row[c] = (table_value(word + c) + table_value(token_type + c)) + table_value(position + c);
    }
    workgroupBarrier();
    layer_norm(t, token);
}

// dst = LayerNorm(dst + src), one workgroup a token: the residual connection and its norm.
@compute @workgroup_size(64)
fn add_norm(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let token = wid.x;
    let h = min(p.hidden, MAX_HIDDEN);
    for (var c = t; c < h; c += THREADS) {
        row[c] = dst[token * h + c] + src[token * h + c];
    }
    workgroupBarrier();
    layer_norm(t, token);
}

// erf, Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7): WGSL has none.
fn erf(x: f32) -> f32 {
    let a = abs(x);
    let k = 1.0 / (1.0 + 0.3275911 * a);
    let poly = k * (0.254829592 + k * (-0.284496736 + k * (1.421413741 + k * (-1.453152027 + k * 1.061405429))));
    let y = 1.0 - poly * exp(-a * a);
    return select(y, -y, x < 0.0);
}

// dst += bias (per column), then GELU (erf form, as BERT) when act is 1. One thread a value.
@compute @workgroup_size(64)
fn bias_act(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= p.tokens * p.width) {
        return;
    }
    var v = dst[i] + param[i % p.width];
    if (p.act == 1u) {
        v = 0.5 * v * (1.0 + erf(v * 0.70710678118654752));
    }
    dst[i] = v;
}

// Self-attention of one head for one query token: src holds Q, K and V one after the other
// (tokens x hidden each), dst receives the context. Scores, softmax and the weighted sum of V all
// run in index order.
@compute @workgroup_size(64)
fn attention(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let head = wid.x;
    let query = wid.y;
    let n = min(p.tokens, MAX_TOKENS);
    let h = p.hidden;
    let d = p.head_dim;
    let k_base = n * h;
    let v_base = 2u * n * h;
    let scale = 1.0 / sqrt(f32(d));
    for (var j = t; j < n; j += THREADS) {
        var s = 0.0;
        for (var e = 0u; e < d; e++) {
            s += src[query * h + head * d + e] * src[k_base + j * h + head * d + e];
        }
        scratch[j] = s * scale;
    }
    workgroupBarrier();
    if (t == 0u) {
        var m = scratch[0];
        for (var j = 1u; j < n; j++) {
            m = max(m, scratch[j]);
        }
        var total = 0.0;
        for (var j = 0u; j < n; j++) {
            let e = exp(scratch[j] - m);
            scratch[j] = e;
            total += e;
        }
        for (var j = 0u; j < n; j++) {
            scratch[j] = scratch[j] / total;
        }
    }
    workgroupBarrier();
    for (var e = t; e < d; e += THREADS) {
        var acc = 0.0;
        for (var j = 0u; j < n; j++) {
            acc += scratch[j] * src[v_base + j * h + head * d + e];
        }
        dst[query * h + head * d + e] = acc;
    }
}

// Mean over the tokens, then L2 normalization (sentence-transformers' Pooling and Normalize):
// dst[0..hidden]. One workgroup.
@compute @workgroup_size(64)
fn pool(@builtin(local_invocation_index) t: u32) {
    let h = min(p.hidden, MAX_HIDDEN);
    for (var c = t; c < h; c += THREADS) {
        var s = 0.0;
        for (var k = 0u; k < p.tokens; k++) {
            s += src[k * h + c];
        }
        row[c] = s / f32(p.tokens);
    }
    workgroupBarrier();
    var sq = 0.0;
    for (var c = t; c < h; c += THREADS) {
        sq += row[c] * row[c];
    }
    scratch[t] = sq;
    let norm = max(sqrt(ordered_sum(t, THREADS)), 1e-12);
    for (var c = t; c < h; c += THREADS) {
        dst[c] = row[c] / norm;
    }
}
