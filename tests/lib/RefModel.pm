package RefModel;
# An independent reference implementation, in pure Perl and double precision, of the
# forward passes kiln's example architectures compute: dense LLaMA (RoPE half or
# interleaved, GQA, tied or untied classifier), Finedeep, DSMoE (threshold tau) and
# UniAttn (softmax sharing with group_size / begin / end). It is written from the
# architectures' published semantics (RMSNorm, SwiGLU, causal softmax attention, the
# Hugging Face tensor names), not from kiln's code, and reads the weights from a
# safetensors file (F32 tensors only).
#
#   use RefModel;
#   my $w = RefModel::load_safetensors('m.safetensors');
#   my $m = RefModel->new($w, arch => 'dense', dim => 48, heads => 3, kv_heads => 1,
#                         layers => 2, rope => 'half', tied => 0);
#   my $row = $m->step($token);          # logits after feeding one more token
#   $m->{active}[$l], $m->{steps}        # DSMoE: active experts counted per layer
#
# Config keys: arch (dense|finedeep|dsmoe|uniattn), dim, heads, kv_heads, layers,
# eps (1e-5), rope_base (10000), rope (half|interleaved), tied (1);
# dsmoe: experts, hidden, tau (0.5), keep ({layer => [experts kept]}); finedeep: sublayers, experts;
# uniattn: group_size, begin, end. vocab and FFN widths come from the tensors' shapes.
use strict;
use warnings;
use JSON::PP ();
use List::Util qw(max sum0);

# ---------------------------------------------------------------- safetensors

# load_safetensors(FILE) -> { name => { shape => [...], rows => [[...], ...] } }
# A 1-D tensor is one row; a 2-D tensor [r, c] is r rows of c values.
sub load_safetensors {
    my ($file) = @_;
    open my $fh, '<:raw', $file or die "RefModel: cannot open $file: $!";
    local $/;
    my $buf = <$fh>;
    close $fh;
    die "RefModel: $file: too short" if length($buf) < 8;
    my ($lo, $hi) = unpack 'V V', substr($buf, 0, 8);
    my $hlen = $hi * 4294967296 + $lo;
    die "RefModel: $file: header length $hlen past the end" if 8 + $hlen > length $buf;
    my $hdr = JSON::PP::decode_json(substr($buf, 8, $hlen));
    my $base = 8 + $hlen;
    my %t;
    for my $name (keys %$hdr) {
        next if $name eq '__metadata__';
        my $e = $hdr->{$name};
        die "RefModel: $file: $name has dtype $e->{dtype}, want F32" unless $e->{dtype} eq 'F32';
        my ($b, $end) = @{ $e->{data_offsets} };
        my @shape = @{ $e->{shape} };
        my $n = 1;
        $n *= $_ for @shape;
        die "RefModel: $file: $name: $n elements but " . ($end - $b) . " bytes"
            unless $end - $b == 4 * $n;
        die "RefModel: $file: $name: data past the end" if $base + $end > length $buf;
        my @v = unpack "f<$n", substr($buf, $base + $b, $end - $b);
        my $cols = @shape ? $shape[-1] : 1;
        my @rows;
        push @rows, [ splice @v, 0, $cols ] while @v;
        $t{$name} = { shape => \@shape, rows => \@rows };
    }
    return \%t;
}

# ---------------------------------------------------------------- math

sub dot {
    my ($a, $b) = @_;
    my $s = 0;
    $s += $a->[$_] * $b->[$_] for 0 .. $#$a;
    return $s;
}

# y = W x for W given as rows [out][in]
sub matvec {
    my ($rows, $x) = @_;
    return [ map { dot($_, $x) } @$rows ];
}

sub add {
    my ($a, $b) = @_;
    return [ map { $a->[$_] + $b->[$_] } 0 .. $#$a ];
}

sub rmsnorm {
    my ($x, $g, $eps) = @_;
    my $ms = 0;
    $ms += $_ * $_ for @$x;
    $ms /= @$x;
    my $r = 1 / sqrt($ms + $eps);
    return [ map { $x->[$_] * $r * $g->[$_] } 0 .. $#$x ];
}

sub sigmoid { return 1 / (1 + exp(-$_[0])) }
sub silu    { return $_[0] / (1 + exp(-$_[0])) }

# down(silu(gate x) * up x) with gate/up as [D][d] rows, down as [d][D] rows
sub swiglu {
    my ($x, $gate, $up, $down) = @_;
    my $g = matvec($gate, $x);
    my $u = matvec($up, $x);
    my @h = map { silu($g->[$_]) * $u->[$_] } 0 .. $#$g;
    return matvec($down, \@h);
}

# Rotate every head of $v (n_heads * dh values) in place for position $pos.
sub rope {
    my ($v, $n_heads, $dh, $pos, $base, $mode) = @_;
    return rope_partial($v, $n_heads, $dh, $pos, $base, $mode, $dh);
}

# ---------------------------------------------------------------- the model

sub new {
    my ($class, $w, %c) = @_;
    my %cfg = (eps => 1e-5, rope_base => 10000, rope => 'half', tied => 1, tau => 0.5, %c);
    for my $k (qw(arch dim heads kv_heads layers)) {
        die "RefModel: config '$k' missing" unless defined $cfg{$k};
    }
    die "RefModel: rope '$cfg{rope}'" unless $cfg{rope} =~ /^(half|interleaved)$/;
    my $self = bless { w => $w, c => \%cfg, pos => 0, steps => 0, active => [],
                       kcache => [], vcache => [], min_tau_gap => 9**9**9 }, $class;
    $self->{dh} = $cfg{dim} / $cfg{heads};
    die "RefModel: dim not divisible by heads" unless $self->{dh} == int $self->{dh};
    die "RefModel: heads not divisible by kv_heads" if $cfg{heads} % $cfg{kv_heads};
    if ($cfg{arch} eq 'uniattn') {
        my @lead = map { $self->is_leader($_) ? 1 : 0 } 0 .. $cfg{layers} - 1;
        $self->{leader} = \@lead;
        # a reuser reads the nearest leader below it
        for my $l (0 .. $cfg{layers} - 1) {
            next if $lead[$l];
            my $p = $l - 1;
            $p-- while $p >= 0 && !$lead[$p];
            die "RefModel: uniattn layer $l has no leader below it" if $p < 0;
            $self->{leader_of}[$l] = $p;
        }
    }
    return $self;
}

sub is_leader {
    my ($self, $l) = @_;
    my $c = $self->{c};
    return $l < $c->{begin} || $l >= $c->{end} || ($l - $c->{begin}) % $c->{group_size} == 0;
}

# rows of tensor NAME (dies when absent); a 1-D tensor gives its one row
sub W {
    my ($self, $name) = @_;
    my $t = $self->{w}{$name} or die "RefModel: tensor '$name' not in the checkpoint";
    return $t->{rows};
}
sub V1 { my ($self, $name) = @_; return $self->W($name)->[0] }

# Causal attention probabilities of every query head for the current position, from
# the query vector q (already rotated) and layer $l's K cache: [H][pos+1].
sub probs {
    my ($self, $q, $l) = @_;
    my ($H, $Hkv, $dh) = ($self->{c}{heads}, $self->{c}{kv_heads}, $self->{dh});
    my $rep = $H / $Hkv;
    my $scale = 1 / sqrt($dh);
    my $K = $self->{kcache}[$l];
    my @P;
    for my $h (0 .. $H - 1) {
        my $kh = int($h / $rep);
        my @qh = @$q[$h * $dh .. ($h + 1) * $dh - 1];
        my @s;
        for my $k (@$K) {
            my @kk = @$k[$kh * $dh .. ($kh + 1) * $dh - 1];
            push @s, dot(\@qh, \@kk) * $scale;
        }
        my $m = max(@s);
        my @e = map { exp($_ - $m) } @s;
        my $z = sum0(@e);
        push @P, [ map { $_ / $z } @e ];
    }
    return \@P;
}

# sum_s P[h][s] * V[s][head of h], concatenated over heads: [H*dh]
sub apply_probs {
    my ($self, $P, $l) = @_;
    my ($H, $Hkv, $dh) = ($self->{c}{heads}, $self->{c}{kv_heads}, $self->{dh});
    my $rep = $H / $Hkv;
    my $Vc = $self->{vcache}[$l];
    my @out;
    for my $h (0 .. $H - 1) {
        my $kh = int($h / $rep);
        my @acc = (0) x $dh;
        for my $s (0 .. $#$Vc) {
            my $p = $P->[$h][$s];
            my $v = $Vc->[$s];
            $acc[$_] += $p * $v->[$kh * $dh + $_] for 0 .. $dh - 1;
        }
        push @out, @acc;
    }
    return \@out;
}

# Attention block output (after o_proj, plus v2_proj for UniAttn reusers) for layer $l.
sub attention {
    my ($self, $u, $l) = @_;
    my $c = $self->{c};
    my $pre = "model.layers.$l.self_attn";
    my $pos = $self->{pos};
    my $v = matvec($self->W("$pre.v_proj.weight"), $u);
    push @{ $self->{vcache}[$l] }, $v;
    if ($c->{arch} eq 'uniattn' && !$self->{leader}[$l]) {
        my $P = $self->{P}[ $self->{leader_of}[$l] ];
        my $a = matvec($self->W("$pre.o_proj.weight"), $self->apply_probs($P, $l));
        return add($a, matvec($self->W("$pre.v2_proj.weight"), $u));
    }
    my $q = rope(matvec($self->W("$pre.q_proj.weight"), $u), $c->{heads}, $self->{dh}, $pos,
                 $c->{rope_base}, $c->{rope});
    my $k = rope(matvec($self->W("$pre.k_proj.weight"), $u), $c->{kv_heads}, $self->{dh}, $pos,
                 $c->{rope_base}, $c->{rope});
    push @{ $self->{kcache}[$l] }, $k;
    my $P = $self->probs($q, $l);
    $self->{P}[$l] = $P;
    return matvec($self->W("$pre.o_proj.weight"), $self->apply_probs($P, $l));
}

sub dense_ffn {
    my ($self, $x, $l) = @_;
    my $pre = "model.layers.$l";
    my $v = rmsnorm($x, $self->V1("$pre.post_attention_layernorm.weight"), $self->{c}{eps});
    return add($x, swiglu($v, $self->W("$pre.mlp.gate_proj.weight"), $self->W("$pre.mlp.up_proj.weight"),
                          $self->W("$pre.mlp.down_proj.weight")));
}

# Expert pruning (config key keep => { L => [E, ...] }): an expert of a layer named in keep
# and not listed is never selected, as if its router logit were -infinity.
sub kept {
    my ($c, $l, $e) = @_;
    return 1 unless $c->{keep} && $c->{keep}{$l};
    return scalar grep { $_ == $e } @{ $c->{keep}{$l} };
}

sub dsmoe_ffn {
    my ($self, $x, $l) = @_;
    my $c = $self->{c};
    my $pre = "model.layers.$l";
    my $n = $c->{experts};
    my $v = rmsnorm($x, $self->V1("$pre.post_attention_layernorm.weight"), $c->{eps});
    my $g = [ map { sigmoid($_) } @{ matvec($self->W("$pre.mlp.router.weight"), $v) } ];
    my ($gate, $up, $down) = map { $self->W("$pre.mlp.$_.weight") } qw(gate_proj up_proj down_proj);
    my $D = @$gate;
    die "RefModel: dsmoe hidden $D not divisible by $n experts" if $D % $n;
    my $de = $D / $n;
    my @out = (0) x @$x;
    my $count = 0;
    for my $i (0 .. $n - 1) {
        next unless kept($c, $l, $i);
        my $gap = abs($g->[$i] - $c->{tau});
        $self->{min_tau_gap} = $gap if $gap < $self->{min_tau_gap};
        next unless $g->[$i] > $c->{tau};
        $count++;
        my ($r0, $r1) = ($i * $de, ($i + 1) * $de - 1);
        my @dn = map { [ @$_[$r0 .. $r1] ] } @$down;
        my $e = swiglu($v, [ @$gate[$r0 .. $r1] ], [ @$up[$r0 .. $r1] ], \@dn);
        $out[$_] += $g->[$i] * $e->[$_] for 0 .. $#out;
    }
    $self->{active}[$l] += $count;
    return $x unless $count;
    return [ map { $x->[$_] + $out[$_] * $n / $count } 0 .. $#out ];
}

sub finedeep_ffn {
    my ($self, $x, $l) = @_;
    my $c = $self->{c};
    for my $j (0 .. $c->{sublayers} - 1) {
        my $pre = "model.layers.$l.mlp.sublayers.$j";
        my $t = rmsnorm($x, $self->V1("$pre.norm.weight"), $c->{eps});
        my @sum = (0) x @$x;
        for my $k (0 .. $c->{experts} - 1) {
            my $ep = "$pre.experts.$k";
            my $e = swiglu($t, $self->W("$ep.gate_proj.weight"), $self->W("$ep.up_proj.weight"),
                           $self->W("$ep.down_proj.weight"));
            my $r = sigmoid(dot($e, $self->V1("$ep.router.weight")));
            $sum[$_] += $r * $e->[$_] for 0 .. $#sum;
        }
        $x = add($x, \@sum);
    }
    return $x;
}

# Feed one token at the next position; returns the logits row (array ref of doubles).
sub step {
    my ($self, $token) = @_;
    my $c = $self->{c};
    my $emb = $self->W('model.embed_tokens.weight');
    die "RefModel: token $token outside the vocabulary" if $token < 0 || $token > $#$emb;
    my $x = [ @{ $emb->[$token] } ];
    for my $l (0 .. $c->{layers} - 1) {
        my $u = rmsnorm($x, $self->V1("model.layers.$l.input_layernorm.weight"), $c->{eps});
        $x = add($x, $self->attention($u, $l));
        $x = $c->{arch} eq 'dsmoe'    ? $self->dsmoe_ffn($x, $l)
           : $c->{arch} eq 'finedeep' ? $self->finedeep_ffn($x, $l)
           :                            $self->dense_ffn($x, $l);
    }
    $self->{P} = [];
    $self->{pos}++;
    $self->{steps}++;
    my $h = rmsnorm($x, $self->V1('model.norm.weight'), $c->{eps});
    my $cls = $c->{tied} ? $emb : $self->W('lm_head.weight');
    return matvec($cls, $h);
}

# (argmax, margin): best index (first on ties) and best minus second-best value
sub argmax_margin {
    my ($row) = @_;
    my ($bi, $best, $second) = (0, $row->[0], -9**9**9);
    for my $i (1 .. $#$row) {
        if ($row->[$i] > $best) { ($second, $best, $bi) = ($best, $row->[$i], $i) }
        elsif ($row->[$i] > $second) { $second = $row->[$i] }
    }
    return ($bi, $best - $second);
}

# greedy_chain(MODEL, [prompt], N) -> ([tokens], CUT): feeds the prompt, then takes the argmax
# N times (each fed back); CUT is the first step whose top-two margin is under the bar of
# $Golden::MARGIN_MIN (N when none is): tokens from there on may legitimately differ.
sub greedy_chain {
    my ($model, $prompt, $n) = @_;
    my $row;
    $row = $model->step($_) for @$prompt;
    my (@chain, $cut);
    for my $i (0 .. $n - 1) {
        my ($best, $margin) = argmax_margin($row);
        $cut //= $i if $margin < ($Golden::MARGIN_MIN // 1e-3);
        push @chain, $best;
        $row = $model->step($best) if $i < $n - 1;
    }
    return (\@chain, $cut // $n);
}


# ---------------------------------------------------------------- GPT-2, GPT-J-style parallel, Mixtral
#
# Three more architectures, as a separate class with the same interface:
#
#   my $m = RefModel::new_arch($w, arch => 'gpt2', heads => 4);
#   my $row = $m->step($token);
#
# arch 'gpt2': GPT2LMHeadModel (learned wpe, pre-LayerNorm with bias, MHA without RoPE,
#   biases on every projection, GELU tanh MLP, classifier tied to wte), in the Hugging Face
#   layout: every Conv1D weight stored [in, out] (y = x W + b), attn.c_attn holding q, k and
#   v side by side (weight [d, 3d], bias [3d]).
#   Keys: heads, eps (1e-5).
# arch 'gptp': GPT-J-style parallel block x += attn(LN x) + mlp(LN x), partial RoPE on the
#   first rotary_dim dims of each head, untied lm_head with bias.
#   Keys: heads, kv_heads, rotary_dim, rope (interleaved), rope_base (10000), eps (1e-5).
# arch 'mixtral': LLaMA body (RMSNorm, GQA, RoPE) with a top-k routed SwiGLU expert FFN
#   (softmax over the selected router logits only; ties go to the lower index).
#   Keys: heads, kv_heads, experts, top_k, rope (half), rope_base (1e6), eps (1e-5), tied (0).
#   After steps: $m->{top_weight}[$l] (sum over steps of the largest routing weight),
#   $m->{selected}[$l][$e] (steps expert e ran), $m->{min_route_gap} (smallest gap between
#   the k-th and (k+1)-th router logit seen: how close routing came to a tie).
# Widths (dim, vocab, hidden, ctx) come from the tensors' shapes.

sub layernorm {
    my ($x, $g, $b, $eps) = @_;
    my $n = @$x;
    my $mu = sum0(@$x) / $n;
    my @c = map { $_ - $mu } @$x;
    my $var = 0;
    $var += $_ * $_ for @c;
    $var /= $n;
    my $r = 1 / sqrt($var + $eps);
    return [ map { $c[$_] * $r * $g->[$_] + $b->[$_] } 0 .. $n - 1 ];
}

sub gelu_tanh {
    my ($x) = @_;
    my $k = sqrt(2 / 3.14159265358979323846);
    return 0.5 * $x * (1 + tanh_d($k * ($x + 0.044715 * $x ** 3)));
}

# tanh in double precision without POSIX (Perl has no builtin tanh)
sub tanh_d {
    my ($z) = @_;
    return $z > 0 ? 1 : -1 if abs($z) > 40;
    my $e = exp(2 * $z);
    return ($e - 1) / ($e + 1);
}

# Rotate the first $rot dims of every head of $v (n_heads * dh values) in place; pair i
# (i < rot/2) has angle pos * base^(-2i/rot); 'interleaved' pairs (2i, 2i+1), 'half'
# pairs (i, i + rot/2). Dims rot..dh-1 of each head are left alone.
sub rope_partial {
    my ($v, $n_heads, $dh, $pos, $base, $mode, $rot) = @_;
    my $half = $rot / 2;
    for my $h (0 .. $n_heads - 1) {
        my $o = $h * $dh;
        for my $i (0 .. $half - 1) {
            my $ang = $pos * $base ** (-2 * $i / $rot);
            my ($c, $s) = (cos $ang, sin $ang);
            my ($a, $b) = $mode eq 'interleaved' ? ($o + 2 * $i, $o + 2 * $i + 1)
                                                 : ($o + $i, $o + $i + $half);
            my ($x0, $x1) = ($v->[$a], $v->[$b]);
            $v->[$a] = $x0 * $c - $x1 * $s;
            $v->[$b] = $x0 * $s + $x1 * $c;
        }
    }
    return $v;
}

# Causal softmax attention of q (H heads of dh) over the caches K, V (lists of rows of
# Hkv * dh; query head h reads kv head h / (H / Hkv)); scores scaled by 1/sqrt(dh).
sub causal_attention {
    my ($q, $K, $V, $H, $Hkv, $dh) = @_;
    my $rep = $H / $Hkv;
    my @out;
    for my $h (0 .. $H - 1) {
        my $kh = int($h / $rep);
        my @qh = @$q[$h * $dh .. ($h + 1) * $dh - 1];
        my @s = map { dot(\@qh, [ @$_[$kh * $dh .. ($kh + 1) * $dh - 1] ]) / sqrt($dh) } @$K;
        my $m = max(@s);
        my @e = map { exp($_ - $m) } @s;
        my $z = sum0(@e);
        my @acc = (0) x $dh;
        for my $t (0 .. $#$V) {
            my $p = $e[$t] / $z;
            $acc[$_] += $p * $V->[$t][$kh * $dh + $_] for 0 .. $dh - 1;
        }
        push @out, @acc;
    }
    return \@out;
}

sub new_arch {
    my ($w, %c) = @_;
    my %cfg = (eps => 1e-5, tied => 0, %c);
    $cfg{rope} //= $cfg{arch} eq 'mixtral' ? 'half' : 'interleaved';
    $cfg{rope_base} //= $cfg{arch} eq 'mixtral' ? 1e6 : 10000;     # Mixtral's rope_theta
    $cfg{kv_heads} //= $cfg{heads};
    die "RefModel: arch '$cfg{arch}'" unless ($cfg{arch} // '') =~ /^(gpt2|gptp|mixtral)$/;
    my $self = bless { w => $w, c => \%cfg, pos => 0, steps => 0, K => [], V => [],
                       top_weight => [], selected => [], min_route_gap => 9**9**9 },
                     'RefModel::Arch';
    my $emb = $cfg{arch} eq 'mixtral' ? 'model.embed_tokens.weight' : 'transformer.wte.weight';
    $self->{dim} = $w->{$emb}{shape}[1] // die "RefModel: no $emb";
    $self->{dh} = $self->{dim} / $cfg{heads};
    $cfg{layers} //= scalar grep { /^(?:transformer\.h|model\.layers)\.\d+\.(?:ln_1|input_layernorm)\.weight$/ } keys %$w;
    die "RefModel: heads not divisible by kv_heads" if $cfg{heads} % $cfg{kv_heads};
    return $self;
}

package RefModel::Arch;
use List::Util qw(max sum0);

sub W  { my ($self, $n) = @_; my $t = $self->{w}{$n} or die "RefModel: tensor '$n' not in the checkpoint"; $t->{rows} }
sub V1 { my ($self, $n) = @_; return $self->W($n)->[0] }
sub lin {                      # W x (+ b when $bias names a tensor)
    my ($self, $x, $wn, $bn) = @_;
    my $y = RefModel::matvec($self->W($wn), $x);
    return $bn ? RefModel::add($y, $self->V1($bn)) : $y;
}

sub conv1d {                   # x W + b, W stored [in, out]: output columns $c0 .. $c0 + $n - 1
    my ($self, $x, $wn, $bn, $c0, $n) = @_;
    my ($W, $b) = ($self->W($wn), $self->V1($bn));
    $c0 //= 0;
    $n //= @{ $W->[0] };
    my @y;
    for my $j ($c0 .. $c0 + $n - 1) {
        my $s = 0;
        $s += $x->[$_] * $W->[$_][$j] for 0 .. $#$x;
        push @y, $s + $b->[$j];
    }
    return \@y;
}

sub attend {
    my ($self, $l, $q, $k, $v) = @_;
    push @{ $self->{K}[$l] }, $k;
    push @{ $self->{V}[$l] }, $v;
    my $c = $self->{c};
    return RefModel::causal_attention($q, $self->{K}[$l], $self->{V}[$l], $c->{heads},
                                      $c->{kv_heads}, $self->{dh});
}

sub gpt2_layer {
    my ($self, $x, $l) = @_;
    my $e = $self->{c}{eps};
    my $p = "transformer.h.$l";
    my $n = RefModel::layernorm($x, $self->V1("$p.ln_1.weight"), $self->V1("$p.ln_1.bias"), $e);
    my $d = @$x;
    my @qkv = map { $self->conv1d($n, "$p.attn.c_attn.weight", "$p.attn.c_attn.bias", $_ * $d, $d) } 0 .. 2;
    my $a = $self->attend($l, @qkv);
    $x = RefModel::add($x, $self->conv1d($a, "$p.attn.c_proj.weight", "$p.attn.c_proj.bias"));
    my $h = RefModel::layernorm($x, $self->V1("$p.ln_2.weight"), $self->V1("$p.ln_2.bias"), $e);
    my $f = [ map { RefModel::gelu_tanh($_) } @{ $self->conv1d($h, "$p.mlp.c_fc.weight", "$p.mlp.c_fc.bias") } ];
    return RefModel::add($x, $self->conv1d($f, "$p.mlp.c_proj.weight", "$p.mlp.c_proj.bias"));
}

sub gptp_layer {
    my ($self, $x, $l) = @_;
    my $c = $self->{c};
    my $p = "transformer.h.$l";
    my $n = RefModel::layernorm($x, $self->V1("$p.ln_1.weight"), $self->V1("$p.ln_1.bias"), $c->{eps});
    my $q = $self->lin($n, "$p.attn.q_proj.weight");
    my $k = $self->lin($n, "$p.attn.k_proj.weight");
    RefModel::rope_partial($q, $c->{heads}, $self->{dh}, $self->{pos}, $c->{rope_base}, $c->{rope}, $c->{rotary_dim});
    RefModel::rope_partial($k, $c->{kv_heads}, $self->{dh}, $self->{pos}, $c->{rope_base}, $c->{rope}, $c->{rotary_dim});
    my $a = $self->lin($self->attend($l, $q, $k, $self->lin($n, "$p.attn.v_proj.weight")), "$p.attn.out_proj.weight");
    my $f = [ map { RefModel::gelu_tanh($_) } @{ $self->lin($n, "$p.mlp.fc_in.weight", "$p.mlp.fc_in.bias") } ];
    my $m = $self->lin($f, "$p.mlp.fc_out.weight", "$p.mlp.fc_out.bias");
    return [ map { $x->[$_] + $a->[$_] + $m->[$_] } 0 .. $#$x ];
}

sub mixtral_layer {
    my ($self, $x, $l) = @_;
    my $c = $self->{c};
    my $p = "model.layers.$l";
    my $u = RefModel::rmsnorm($x, $self->V1("$p.input_layernorm.weight"), $c->{eps});
    my $q = $self->lin($u, "$p.self_attn.q_proj.weight");
    my $k = $self->lin($u, "$p.self_attn.k_proj.weight");
    RefModel::rope($q, $c->{heads}, $self->{dh}, $self->{pos}, $c->{rope_base}, $c->{rope});
    RefModel::rope($k, $c->{kv_heads}, $self->{dh}, $self->{pos}, $c->{rope_base}, $c->{rope});
    my $att = $self->attend($l, $q, $k, $self->lin($u, "$p.self_attn.v_proj.weight"));
    $x = RefModel::add($x, $self->lin($att, "$p.self_attn.o_proj.weight"));

    my $v = RefModel::rmsnorm($x, $self->V1("$p.post_attention_layernorm.weight"), $c->{eps});
    my $r = $self->lin($v, "$p.block_sparse_moe.gate.weight");
    # experts by descending logit, the lower index first among equals
    my @order = grep { RefModel::kept($c, $l, $_) } sort { $r->[$b] <=> $r->[$a] || $a <=> $b } 0 .. $#$r;
    my @sel = @order[0 .. $c->{top_k} - 1];
    if ($c->{top_k} < @order) {
        my $gap = $r->[ $order[ $c->{top_k} - 1 ] ] - $r->[ $order[ $c->{top_k} ] ];
        $self->{min_route_gap} = $gap if $gap < $self->{min_route_gap};
    }
    my $rmax = $r->[ $order[0] ];
    my %pw = map { $_ => exp($r->[$_] - $rmax) } @sel;
    my $z = sum0(values %pw);
    $pw{$_} /= $z for @sel;
    $self->{top_weight}[$l] += max(values %pw);
    my @out = @$x;
    for my $e (@sel) {
        $self->{selected}[$l][$e]++;
        my $ep = "$p.block_sparse_moe.experts.$e";
        my $y = RefModel::swiglu($v, $self->W("$ep.w1.weight"), $self->W("$ep.w3.weight"), $self->W("$ep.w2.weight"));
        $out[$_] += $pw{$e} * $y->[$_] for 0 .. $#out;
    }
    return \@out;
}

# Feed one token at the next position; returns the logits row.
sub step {
    my ($self, $token) = @_;
    my $c = $self->{c};
    my $arch = $c->{arch};
    my $emb = $self->W($arch eq 'mixtral' ? 'model.embed_tokens.weight' : 'transformer.wte.weight');
    die "RefModel: token $token outside the vocabulary" if $token < 0 || $token > $#$emb;
    my $x = [ @{ $emb->[$token] } ];
    if ($arch eq 'gpt2') {
        my $wpe = $self->W('transformer.wpe.weight');
        die "RefModel: position $self->{pos} past wpe" if $self->{pos} > $#$wpe;
        $x = RefModel::add($x, $wpe->[ $self->{pos} ]);
    }
    for my $l (0 .. $c->{layers} - 1) {
        $x = $arch eq 'gpt2' ? $self->gpt2_layer($x, $l)
           : $arch eq 'gptp' ? $self->gptp_layer($x, $l)
           :                   $self->mixtral_layer($x, $l);
    }
    $self->{pos}++;
    $self->{steps}++;
    if ($arch eq 'mixtral') {
        my $h = RefModel::rmsnorm($x, $self->V1('model.norm.weight'), $c->{eps});
        return RefModel::matvec($c->{tied} ? $emb : $self->W('lm_head.weight'), $h);
    }
    my $h = RefModel::layernorm($x, $self->V1('transformer.ln_f.weight'),
                                $self->V1('transformer.ln_f.bias'), $c->{eps});
    return RefModel::matvec($emb, $h) if $arch eq 'gpt2';
    return $self->lin($h, 'lm_head.weight', 'lm_head.bias');
}

package RefModel;

1;
