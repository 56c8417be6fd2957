/* half.h - 16-bit float formats (IEEE binary16 "F16" and bfloat16 "BF16")
 * to and from fp32, shared by every reader and writer of model files
 * (gguf.c, gguf_writer.c, safetensors.c, the tests' writers).
 *
 * What it is: exact widening (f16/bf16 -> f32: every 16-bit value, subnormals,
 * infinities and NaNs included, has one exact fp32 value) and correctly
 * rounded narrowing (f32 -> f16/bf16: round to nearest, ties to even, as
 * numpy/PyTorch and ggml do; overflow to infinity; NaN stays NaN).  What it is
 * not: a tensor converter (the readers and writers walk the tensors).
 *
 * Header-only (static inline): the functions are small and sit in inner
 * loops of the converters. */
#ifndef TS_HALF_H
#define TS_HALF_H

#include <stdint.h>
#include <string.h>

/* IEEE half -> single, exact for all inputs including subnormals/inf/nan. */
static inline float half_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else { /* subnormal: renormalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) { man <<= 1; exp--; }
            man &= 0x3ff;
            bits = sign | (exp << 23) | (man << 13);
        }
    } else if (exp == 31) bits = sign | 0x7f800000u | (man << 13);
    else bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* bfloat16 -> single: the high half of the fp32 bit pattern. */
static inline float half_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* single -> bfloat16, round to nearest even; NaN stays a (quiet) NaN. */
static inline uint16_t half_f32_to_bf16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40);
    bits += 0x7fffu + ((bits >> 16) & 1);
    return (uint16_t)(bits >> 16);
}

/* single -> IEEE half, round to nearest even (subnormal results included);
 * values beyond the largest half round to infinity; NaN stays NaN. */
static inline uint16_t half_f32_to_f16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    uint16_t sign = (uint16_t)((bits >> 16) & 0x8000);
    uint32_t abs = bits & 0x7fffffffu;
    if (abs > 0x7f800000u) return (uint16_t)(sign | 0x7e00 | ((abs >> 13) & 0x3ff));
    if (abs >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* >= 65520: inf */
    if (abs < 0x38800000u) {                                  /* below 2^-14: subnormal half */
        if (abs < 0x33000000u) return sign;                   /* < 2^-25: rounds to 0 */
        uint32_t exp = abs >> 23, man = (abs & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - exp; /* 14..24: value = man * 2^(exp-150) = h * 2^-24 */
        uint32_t h = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    /* normal: rebias the exponent, round the 13 dropped mantissa bits */
    uint32_t h = ((abs >> 13) - ((127u - 15u) << 10)), rem = abs & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++; /* may carry into inf: correct */
    return (uint16_t)(sign | h);
}

#endif
