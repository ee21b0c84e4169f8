#!/usr/bin/perl
# Per-layer lists against an independent reference: examples/per-layer.kiln takes one FFN
# width per layer from its default, from `-D hidden=a,b,c` and from a config's
# intermediate_size array; each program's logits match the double-precision Perl reference
# (tests/lib/RefModel.pm, which reads every width from the tensors' shapes), and the config
# and -D builds agree byte for byte.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Golden qw(run_cmd);
use RefModel;

my $kiln = Golden::kiln();
my $dir  = Golden::tmpdir();
my $spec = 'examples/per-layer.kiln';
my %shape = (dim => 32, heads => 4, kv_heads => 2, layers => 3, vocab => 60);
my @small = map { ('-D', "$_=$shape{$_}") } sort keys %shape;
push @small, '-D', 'ctx=32';
my @tokens = map { (13 * $_ * $_ + 7 * $_ + 2) % $shape{vocab} } 0 .. 7;

sub check_against_reference {
    my ($label, $w, $prog) = @_;
    my $lf = "$prog.logits";
    my $r = run_cmd($prog, '--tokens', join(',', @tokens), '--logits', $lf);
    ok($r->{rc} == 0, "$label: runs") or diag(Golden::how($r));
    my $ref = RefModel->new(RefModel::load_safetensors($w), arch => 'dense', %shape, tied => 1,
                            rope => 'half');
    my @want = map { $ref->step($_) } @tokens;
    my ($worst, $at, @fails) = Golden::compare_rows(Golden::read_rows($lf) // [],
                                                    [ map { [$_, $want[$_]] } 0 .. $#tokens ]);
    ok(!@fails, sprintf('%s: logits match the reference (worst ratio %.3g at %s)', $label,
                        $worst, $at)) or diag(join "\n", @fails);
    return Golden::slurp($lf);
}

for my $case (['default widths', []], ['-D hidden=40,56,72', ['-D', 'hidden=40,56,72']]) {
    my ($label, $d) = @$case;
    (my $tag = $label) =~ s/\W+/_/g;
    my $w = "$dir/$tag.safetensors";
    ok(Golden::make_weights(spec => $spec, defines => [@small, @$d], seed => 7, out => $w,
                            label => $label), "$label: weights");
    my $r = run_cmd($kiln, 'build', $spec, @small, @$d, '--weights', $w, '-o', "$dir/$tag");
    ok($r->{rc} == 0, "$label: build") or diag(Golden::how($r));
    check_against_reference($label, $w, "$dir/$tag");
}

# the same widths from a config file: the same program's logits
my $cfg = "$dir/config.json";
open my $fh, '>', $cfg or die;
print $fh '{"hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2, '
        . '"num_hidden_layers": 3, "vocab_size": 60, "max_position_embeddings": 32, '
        . '"intermediate_size": [40, 56, 72], "rms_norm_eps": 1e-05, "rope_theta": 10000.0, '
        . '"tie_word_embeddings": true, "torch_dtype": "float32"}' . "\n";
close $fh;
my $w = "$dir/_D_hidden_40_56_72.safetensors";
my $r = run_cmd($kiln, 'build', $spec, '--config', $cfg, '--weights', $w, '-o', "$dir/cfg");
ok($r->{rc} == 0 && $r->{err} eq '', 'config: build, no warnings') or diag(Golden::how($r));
my $text = check_against_reference('config', $w, "$dir/cfg");
ok(defined $text && $text eq (Golden::slurp("$dir/_D_hidden_40_56_72.logits") // ''),
   'config and -D give the same logits');

# a list of the wrong length is refused by the spec's assert, with its message
$r = run_cmd($kiln, 'check', $spec, @small, '-D', 'hidden=40,56');
ok($r->{rc} == 1 && $r->{err} =~ /per-layer\.kiln:\d+:\d+: error: hidden needs one width per layer/,
   'two widths for three layers: the assert says so') or diag(Golden::how($r));
done_testing();
