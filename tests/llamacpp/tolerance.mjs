// tolerance.mjs - how far tokshift's statistics and llama.cpp's may differ
// for one row, from the arithmetic (issue 9): both are fp32 evaluations of
// the same model, each within errbound_tool's bound of the exact value
// (tests/errbound.h: fp32 rounding per operation, any summation order,
// propagated through the model), so twice that; plus what ref.mjs adds on
// its side: llama.cpp's softmax in float32 before ref.mjs takes logs, where
// probability i carries the rounding of l_i - max (u |ln p_i - ln p_max|),
// of expf (2 u) and of the float32 result (u): relative r_i <= u (|ln p_i -
// top1| + 3).  Then |d ln p_tok| <= r_tok (renormalised in float64:
// normalisation errors cancel), |d top1| <= 3 u, and
// |d H| <= sum p_i r_i |ln p_i + H| <= u E[(|ln p| + 3)(|ln p| + H)]
//       = u (varentropy + 2 H^2 + 6 H)   (E|ln p| = H, E ln^2 p = varentropy + H^2).

const U = 2 ** -24;

// ours: tokshift's row (logprob, entropy, top1_logprob, varentropy);
// bound: errbound_tool's row for it.  Returns the tolerance per statistic.
export function tolerance(ours, bound) {
    const H = ours.entropy, V = Math.max(ours.varentropy, 0);
    return {
        logprob: 2 * bound.logprob + U * (Math.abs(ours.logprob - ours.top1_logprob) + 3),
        entropy: 2 * bound.entropy + U * (V + 2 * H * H + 6 * H),
        top1_logprob: 2 * bound.top1_logprob + 3 * U,
    };
}
