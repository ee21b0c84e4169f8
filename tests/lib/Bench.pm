package Bench;
# Bench.pm - what the benchmarks in tests/bench share: a stories110M-shaped dense model
# (d 768, 12 layers, 12 heads, hidden 2048, vocab 32000, ctx 1024, untied classifier;
# det-weights, f32) built into programs, its prompt, and medians.
#   my %prog = Bench::build_stories110m($dir, plain => [], O0 => ['-O0']);
use strict;
use warnings;
use Golden qw(run_cmd);

our @SHAPE = map { ('-D', $_) } qw(dim=768 layers=12 heads=12 kv_heads=12 hidden=2048
                                   vocab=32000 ctx=1024 tied=0);

# The 128 prompt tokens every benchmark runs.
sub prompt { return join ',', map { ($_ * 7919 + 1) % 32000 } 0 .. 127 }

sub median { my @s = sort { $a <=> $b } @_; return $s[@s / 2] }

# Builds one program per NAME => [extra kiln build flags] in $dir from one set of weights
# (written, then removed); returns NAME => path. Dies with the command's output on failure.
sub build_stories110m {
    my ($dir, %builds) = @_;
    local $Golden::TIMEOUT = 3600;
    my $kiln = Golden::kiln();
    my $n = keys %builds;
    print "# building a stories110M-shaped model (438 MB of f32 weights) in $dir",
          $n > 1 ? ", $n times\n" : "\n";
    my $r = run_cmd($kiln, 'weights', 'examples/llama.kiln', @SHAPE, '--seed', 1, '-o',
                    "$dir/w.safetensors");
    die Golden::how($r) if $r->{rc};
    my %prog;
    for my $k (sort keys %builds) {
        $prog{$k} = "$dir/$k";
        $r = run_cmd($kiln, 'build', 'examples/llama.kiln', @SHAPE, '--weights',
                     "$dir/w.safetensors", '-o', $prog{$k}, @{ $builds{$k} });
        die Golden::how($r) if $r->{rc};
    }
    unlink "$dir/w.safetensors";
    return %prog;
}

1;
