#!/usr/bin/perl
# Context length at run time and lazy cache memory. A model compiled for 262144 positions
# (state: 4 caches of 262144 x 128 floats, 512 MiB) must run a short prompt in a small
# fraction of that (the state is an anonymous mapping, zero until written; peak RSS via
# GNU time's %M); --ctx N caps the positions (the prompt, generation's "context is full"
# note, the --stats cache report) and must be within 1 .. the compiled ctx; logits with
# --ctx 64 equal those without it; --bench reruns (which re-zero only the rows written)
# generate what the first run generates.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Golden qw(run_cmd);

my $kiln = Golden::kiln();
my $dir  = Golden::tmpdir();
my $CTX = 262144;
my @D = map { ('-D', $_) } (qw(layers=2 dim=128 heads=2 kv_heads=2 hidden=24 vocab=20), "ctx=$CTX");
my $state = 4 * $CTX * 128 * 4;
my $w = "$dir/w.safetensors";
my $prog = "$dir/long";
Golden::make_weights(spec => 'examples/llama.kiln', defines => \@D, seed => 5, out => $w,
                     label => 'long context') or BAIL_OUT('no weights');
# the default blocks of 64: the frame (with fused attention no [T, heads, ctx] scores) is
# mapped lazily too, so it costs only what a run reaches
my $r = run_cmd($kiln, 'build', 'examples/llama.kiln', @D, '--weights', $w, '-o', $prog);
ok($r->{rc} == 0 && -x $prog, 'kiln build, ctx 262144') or BAIL_OUT(Golden::how($r));

# peak RSS (KiB) of a run, by GNU time
SKIP: {
    skip 'no /usr/bin/time (apt package time; mk/deps.sh installs it)', 2 unless -x '/usr/bin/time';
    my $t = run_cmd('/usr/bin/time', '-f', 'peak-rss %M', $prog, '--tokens', '1,2,3', '-n', 2,
                    '--stats');
    ok($t->{rc} == 0, 'a short run') or diag(Golden::how($t));
    my ($kib) = ($t->{err} // '') =~ /^peak-rss (\d+)$/m;
    $kib //= 9**9**9;
    ok($kib * 1024 < $state / 4, sprintf('peak RSS %d KiB is far below the state (%d KiB) '
                                         . 'and the frame', $kib, $state / 1024));
    note("peak RSS $kib KiB, state " . $state / 1024 . ' KiB');
}

# --ctx 16: generation stops at 16 positions; --stats reports 16 positions and their bytes
$r = run_cmd($prog, '--tokens', '1,2,3', '-n', 40, '--ctx', 16, '--stats');
is($r->{rc}, 0, '--ctx 16 runs') or diag(Golden::how($r));
like($r->{err}, qr/note: context of 16 positions is full; stopped after 14 generated tokens/,
     '--ctx 16: generation stops at 16 positions');
my @ids = split ' ', ($r->{out} // '');
is(scalar @ids, 14, '--ctx 16: 14 tokens generated after a prompt of 3');
my @kv = ($r->{err} // '') =~ /^kv-cache \S+ l=\d+: width 128, capacity 16, (\d+) bytes$/mg;
is_deeply(\@kv, [ (16 * 128 * 4) x 4 ], '--stats: every cache at capacity 16, 8192 bytes');
like($r->{err}, qr/^kv-cache total: 4 caches, 32768 bytes .*--ctx 16 of 262144 positions/m,
     '--stats: the total is the bytes of 16 positions');
$r = run_cmd($prog, '--tokens', '1,2,3', '-n', 2, '--stats');
like($r->{err}, qr/^kv-cache total: 4 caches, $state bytes/m, 'without --ctx: the compiled capacity');
my $gen = run_cmd($prog, '--tokens', '1,2,3', '-n', 13);
is(run_cmd($prog, '--tokens', '1,2,3', '-n', 13)->{out}, $gen->{out}, 'generation is deterministic');
my $cut = run_cmd($prog, '--tokens', '1,2,3', '-n', 40, '--ctx', 16);
my @first = (split ' ', $gen->{out} // '')[0 .. 12];
is(join(' ', (split ' ', $cut->{out} // '')[0 .. 12]), join(' ', @first),
   '--ctx 16 generates what the full context does, up to where it stops');

# usage errors
for my $bad ([0, 'out of range'], [$CTX + 1, 'out of range'], ['x', 'not an integer']) {
    my $e = run_cmd($prog, '--tokens', '1', '--ctx', $bad->[0]);
    is($e->{rc}, 2, "--ctx $bad->[0]: usage error");
    like($e->{err}, qr/--ctx: .*$bad->[1]/, "--ctx $bad->[0]: says $bad->[1]");
}
my $long = join ',', map { $_ % 20 } 1 .. 17;
my $e = run_cmd($prog, '--tokens', $long, '--ctx', 16);
is($e->{rc}, 2, '--ctx 16 refuses a prompt of 17 tokens');
like($e->{err}, qr/17 tokens, but the context of this run \(--ctx\) holds 16/, '... and says why');
$e = run_cmd($prog, '--tokens', join(',', map { $_ % 20 } 1 .. 16), '--ctx', 16, '-n', 3);
is($e->{rc}, 0, '--ctx 16 takes a prompt of 16 tokens');
like($e->{err}, qr/context of 16 positions is full; stopped after 1 generated tokens/,
     '... and generates one token');

# logits with --ctx 64 equal those without it
my $a = run_cmd($prog, '--tokens', '4,9,1,7,3', '--logits', '-');
my $b = run_cmd($prog, '--tokens', '4,9,1,7,3', '--logits', '-', '--ctx', 64);
ok($a->{rc} == 0 && length $a->{out}, 'logits without --ctx');
is($b->{out}, $a->{out}, 'logits with --ctx 64 equal those without it');

# --bench reruns reuse the state after zeroing the rows written; the help documents --ctx
$r = run_cmd($prog, '--tokens', '1,2,3', '-n', 20, '--ctx', 32, '--bench', '--bench-runs', 3);
is($r->{rc}, 0, '--bench with --ctx 32') or diag(Golden::how($r));
like($r->{err}, qr/bench: all 22 tokens, 3 runs/, '--bench: every run takes the same 22 positions (3 prompt, 19 fed back)');
$r = run_cmd($prog, '--help');
like($r->{out}, qr/--ctx N\s+context length of this run, 1 <= N <= 262144/, '--help documents --ctx');
done_testing();
