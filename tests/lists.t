#!/usr/bin/perl
# List-valued parameters and the front end's checks: a list param in the IR's param table,
# per-head rope bases (rope_heads), -D lists and the spellings of an integer, assert, and the
# warnings about an unused value and an unread -D parameter (none for the examples).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Golden qw(run_cmd);

my $kiln = Golden::kiln();
my $dir  = Golden::tmpdir();

sub write_file { Golden::write_file(@_) }

sub fails_with {
    my ($r, $pattern, $label) = @_;
    ok(!$r->{sig} && $r->{rc} == 1 && $r->{err} =~ $pattern, $label) or diag(Golden::how($r));
}

sub works {
    my ($r, $label) = @_;
    ok(!$r->{sig} && $r->{rc} == 0, $label) or diag(Golden::how($r));
    return $r;
}

my $spec = "$dir/lists.kiln";
write_file($spec, <<'KILN');
model lists {
  param dim = 32, heads = 4, vocab = 16, ctx = 8, layers = 1
  param rope_bases = [10000, 10000, 500000, 500000]
  param tags = ["half", "say \"hi\""]
  param scales = [1, 0.5]
  let n = len(rope_bases)
  assert n == heads, "one rope base per head"
  assert dim % heads == 0, "heads must divide dim"
  weights {
    embed [vocab, dim] = "embed.weight"
  }
  forward(token) {
    x = embed[token]
    for l in 0..layers {
      x = rope(x, heads, rope_bases, tags[0]) * scales[len(scales) - 1]
    }
    return linear(x, embed)
  }
}
KILN

# ---- list params in the IR and rope_heads
my $r = works(run_cmd($kiln, 'dump', $spec), 'a spec with list params dumps');
like($r->{out}, qr/^param rope_bases = \[10000, 10000, 500000, 500000\]$/m, 'the list param line');
like($r->{out}, qr/^param tags = \["half", "say \\"hi\\""\]$/m, 'a list of strings, quoted');
like($r->{out}, qr/^param scales = \[1, 0\.5\]$/m, 'integers among numbers become numbers');
like($r->{out}, qr/rope_heads %\d+ heads=4 rot=8 bases=\[10000,10000,500000,500000\] mode="half"/,
     'a list base emits rope_heads with one base per head');
is($r->{err}, '', 'no warnings');
works(run_cmd($kiln, 'check', $spec), 'kiln check accepts rope_heads');

# ---- -D of a list
$r = works(run_cmd($kiln, 'dump', $spec, '-D', 'rope_bases=1e4,2e4, 3e4,40000'),
           '-D name=a,b,c sets a list');
like($r->{out}, qr/^param rope_bases = \[10000, 20000, 30000, 40000\]$/m, 'the list from -D');
like($r->{out}, qr/bases=\[10000,20000,30000,40000\]/, 'the rope bases from -D');
$r = works(run_cmd($kiln, 'dump', $spec, '-D', 'heads=2', '-D', 'rope_bases=5,7'),
           'a -D list may have another length than the default');
like($r->{out}, qr/heads=2 rot=16 bases=\[5,7\]/, 'two heads, two bases');
$r = works(run_cmd($kiln, 'dump', $spec, '-D', 'scales=3'), '-D name=5 on a list param');
like($r->{out}, qr/^param scales = \[3\]$/m, 'is a list of one');
fails_with(run_cmd($kiln, 'check', $spec, '-D', 'heads=2'),
           qr/lists\.kiln:7:3: error: one rope base per head/, 'assert at model level after -D');
fails_with(run_cmd($kiln, 'check', $spec, '-D', 'rope_bases=1,x'),
           qr/^-D: error: rope_bases=1,x: 'rope_bases' is a list of integers; 'x' is not one$/m,
           'a bad item of a -D list');
fails_with(run_cmd($kiln, 'check', $spec, '-D', 'dim=32,64'),
           qr/^-D: error: dim=32,64: 'dim' takes one value, not a list$/m, 'a list for a scalar');

# ---- the spellings of an integer
$r = works(run_cmd($kiln, 'dump', $spec, '-D', 'layers=2e0'), '-D layers=2e0');
like($r->{out}, qr/^param layers = 2$/m, '2e0 is 2');
for my $v ('1e6', '1000000.0', '1000000') {
    $r = works(run_cmd($kiln, 'dump', $spec, '-D', "vocab=$v"), "-D vocab=$v");
    like($r->{out}, qr/^param vocab = 1000000$/m, "$v is 1000000");
}
fails_with(run_cmd($kiln, 'check', $spec, '-D', 'layers=2.5'),
           qr/^-D: error: layers=2\.5: 'layers' is an integer parameter$/m, '-D layers=2.5 fails');

# ---- a config value names the config file
write_file("$dir/config.json", '{"num_attention_heads": 2.5}');
fails_with(run_cmd($kiln, 'check', 'examples/llama.kiln', '--config', "$dir/config.json"),
           qr/config\.json: error: .*'heads' is an integer parameter/,
           'a fractional config value for an integer parameter names the config');

# ---- warnings
my $warn = "$dir/warn.kiln";
write_file($warn, <<'KILN');
model warn {
  param dim = 16, vocab = 8, layers = 3, unread = 5
  weights {
    embed [vocab, dim] = "embed.weight"
  }
  forward(token) {
    x = embed[token]
    for l in 0..layers {
      unused = linear(x, embed)
      _kept = x * 2
      x = x * 0.5
    }
    return linear(x, embed)
  }
}
KILN
$r = works(run_cmd($kiln, 'check', $warn, '-D', 'unread=6'), 'warnings do not fail the check');
my @unused = $r->{err} =~ /warn\.kiln:9:7: warning: 'unused' is computed but never used/g;
is(scalar @unused, 1, 'an unused value is warned once, not once per iteration')
    or diag($r->{err});
unlike($r->{err}, qr/_kept/, 'no warning for a name starting with _');
like($r->{err}, qr/^-D: warning: parameter 'unread' is set but nothing reads it$/m,
     'a -D parameter nothing reads');
$r = run_cmd($kiln, 'check', $warn);
unlike($r->{err}, qr/unread/, 'no warning for that parameter without -D');

for my $ex (sort glob 'examples/*.kiln') {
    $r = run_cmd($kiln, 'check', $ex);
    ok($r->{rc} == 0 && $r->{err} eq '', "$ex: checks without warnings") or diag(Golden::how($r));
}

done_testing();
