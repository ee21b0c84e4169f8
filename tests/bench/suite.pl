#!/usr/bin/perl
# tests/bench/suite.pl - the project's benchmark suite (`ninja bench`): `kiln bench` on a
# stories110M-shaped dense model, a ~1B dense model, and Finedeep, DSMoE and UniAttn at
# stories110M's size (d 768, 12 layers, 12 heads, vocab 32000, ctx 1024, untied classifier;
# the FFN of each split so that it holds what a 2048-wide SwiGLU does: ~134M parameters with
# the embedding and the classifier, like the dense model). For each model it writes
# det-weights (f32), runs kiln bench with every weight type at 1 and 2 threads (prompt of
# 128, 64 decode steps), prints its markdown tables and writes its JSON records to
# build/bench/NAME.json; the weights are removed after each model. A benchmark, not a test:
# it asserts nothing about speed. Minutes for the small models, far more for 1b (3.8 GB of
# f32 weights, one program per weight type).
#
# Environment (for quicker runs):
#   KILN_BENCH_MODELS   comma-separated names, default s110m,1b,finedeep,dsmoe,uniattn
#   KILN_BENCH_ROUNDS   rounds (kiln bench -r), default 5
#   KILN_BENCH_WTYPES   default f32,f16,q8_0,q4_0 (a type kiln cannot build yet is reported
#                       and skipped by kiln bench)
#   KILN_BENCH_THREADS  default 1,2
#   KILN_BENCH_ARGS     more kiln bench options, split on white space (e.g. "-p 64 -n 32")
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use File::Path qw(make_path);
use Golden qw(run_cmd);
use Bench;

my $common = [map { ('-D', $_) } qw(dim=768 layers=12 heads=12 kv_heads=12 vocab=32000
                                    ctx=1024 tied=0)];
my %models = (
    s110m    => ['examples/llama.kiln', [@Bench::SHAPE]],
    '1b'     => ['examples/llama.kiln', [map { ('-D', $_) } qw(dim=2048 layers=16 heads=32
                                         kv_heads=32 hidden=5632 vocab=32000 ctx=1024 tied=0)]],
    # 2 sub-layers x 4 experts x 256 rows: the 2048 rows of the dense FFN
    finedeep => ['examples/finedeep.kiln', [@$common, map { ('-D', $_) }
                                            qw(sublayers=2 experts=4 expert_hidden=256)]],
    # the dense FFN in 8 experts of 256 rows, routed per token (tau 0.5)
    dsmoe    => ['examples/dsmoe.kiln', [@$common, map { ('-D', $_) } qw(hidden=2048 experts=8)]],
    # leaders 0, 1, 2, 5, 8, 11; the other six layers reuse their leader's probabilities
    uniattn  => ['examples/uniattn.kiln', [@$common, map { ('-D', $_) }
                                           qw(hidden=2048 group_size=3 begin=2 end=12)]],
);
my @order = qw(s110m 1b finedeep dsmoe uniattn);

my @names = split /,/, $ENV{KILN_BENCH_MODELS} // join(',', @order);
for my $n (@names) {
    die "suite.pl: unknown model '$n' in KILN_BENCH_MODELS (known: @order)\n" unless $models{$n};
}
my $rounds  = $ENV{KILN_BENCH_ROUNDS}  // 5;
my $wtypes  = $ENV{KILN_BENCH_WTYPES}  // 'f32,f16,q8_0,q4_0';
my $threads = $ENV{KILN_BENCH_THREADS} // '1,2';
my @more    = split ' ', $ENV{KILN_BENCH_ARGS} // '';

my $kiln = Golden::kiln();
my $dir  = Golden::tmpdir();
my $out  = 'build/bench';
make_path($out);
local $Golden::TIMEOUT = 3 * 3600;
my $failed = 0;
for my $name (@names) {
    my ($spec, $defines) = @{ $models{$name} };
    my $w = "$dir/$name.safetensors";
    print "\n## $name: $spec @$defines\n\n";
    my $r = run_cmd($kiln, 'weights', $spec, @$defines, '--seed', 1, '-o', $w);
    if ($r->{rc}) {
        print STDERR Golden::how($r);
        $failed = 1;
        next;
    }
    my $json = "$out/$name.json";
    # streamed, not captured: kiln bench reports its progress as it goes
    my $rc = system { $kiln } $kiln, 'bench', $spec, @$defines, '--weights', $w,
        '--wtype', $wtypes, '-t', $threads, '-r', $rounds, '--json', $json, @more;
    unlink $w;
    $rc = $rc == -1 ? 127 : $rc >> 8;
    # 1: something was left out (a weight type that does not build yet), the rest reported
    if ($rc > 1 || !-s $json) {
        print STDERR "suite.pl: kiln bench on $name failed (exit $rc)\n";
        $failed = 1;
    } else {
        print "\n(JSON: $json)\n";
    }
}
exit $failed;
