/* measure.c - the divergence of a model-changing pass, measured on calibration tokens
 * (measure.h). */
#include <stdlib.h>

#include "measure.h"

void measure_describe(const passes_options *p, char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = 0;
#define ADD(...) (n += (size_t)snprintf(buf + n, n < size ? size - n : 0, __VA_ARGS__))
    if (p->share_group > 0)
        ADD("%sshare-softmax=%d,%d,%d", n ? ", " : "", p->share_group, p->share_begin,
            p->share_end);
    if (p->keep_experts)
        ADD("%skeep-experts=%s", n ? ", " : "", p->keep_experts);
    if (p->prune_profile)
        ADD("%sprune-experts=%s", n ? ", " : "", p->prune_profile);
    if (p->min_freq > 0)
        ADD("%smin-freq=%g", n ? ", " : "", p->min_freq);
    if (p->expert_budget > 0)
        ADD("%sexpert-budget=%g", n ? ", " : "", p->expert_budget);
#undef ADD
}

void measure_note_unmeasured(const char *command)
{
    if (!passes_changes_model(&passes_opts))
        return;
    char what[512];
    measure_describe(&passes_opts, what, sizeof what);
    pass_note("calibration", "%s changes the model; %s has no weights, so no divergence is "
              "measured (kiln build --weights measures it)", what, command);
    fprintf(stderr, "kiln: note: %s changes the model; %s has no weights, so no divergence is "
            "measured (kiln build --weights measures it)\n", what, command);
}

int measure_reference_passes(ir_module **m, const char *before, const char *after, int verbose)
{
    passes_options saved = passes_opts;
    int nnotes = passes_note_count();
    pass_record *records = malloc(sizeof *records * (size_t)passes_count());
    if (!records)
        DIE("out of memory");
    passes_records_save(records);
    passes_opts.share_group = passes_opts.share_begin = passes_opts.share_end = 0;
    passes_opts.keep_experts = passes_opts.prune_profile = NULL;
    passes_opts.min_freq = passes_opts.expert_budget = 0;
    int rc = passes_run(m, before, after, verbose);
    passes_opts = saved;
    passes_records_restore(records);
    free(records);
    passes_notes_truncate(nnotes);
    return rc;
}

int measure_divergence(const char *calib, int verbose, ir_module *unchanged, const ckpt *ck,
                       const ir_module *changed, const pack_tensor *changed_w)
{
    int n = 0, rc = 1;
    int32_t *tokens = calib_tokens(calib, changed->vocab, changed->ctx, &n);
    pack_tensor *ref_w = NULL;
    void **owned = NULL;
    int nowned = 0;
    if (!tokens || measure_reference_passes(&unchanged, NULL, NULL, verbose) != 0)
        goto out;
    ref_w = calloc((size_t)(unchanged->ntensors ? unchanged->ntensors : 1), sizeof *ref_w);
    if (!ref_w)
        DIE("out of memory");
    calib_result r;
    if (bind_check_llama2c(unchanged, ck) != 0 ||
        bind_weights(unchanged, ck, ref_w, &owned, &nowned) != 0 ||
        calib_compare(unchanged, ref_w, changed, changed_w, tokens, n, verbose, &r) != 0)
        goto out;
    char what[512], text[1024];
    measure_describe(&passes_opts, what, sizeof what);
    snprintf(text, sizeof text, "%s changes the model: on %d calibration tokens, mean KL %.9g "
             "nats/token (max %.4g), top-1 agreement %.1f%% (%d/%d)", what, r.tokens, r.mean_kl,
             r.max_kl, 100.0 * r.agree / r.tokens, r.agree, r.tokens);
    fprintf(stderr, "kiln: %s\n", text);
    pass_note("calibration", "%s", text);
    rc = 0;
out:
    bind_free(owned, nowned);
    free(ref_w);
    free(tokens);
    ir_module_free(unchanged);
    return rc;
}
