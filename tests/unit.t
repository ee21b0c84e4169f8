#!/usr/bin/perl
# C unit test programs (built by the build system into build/tests/): each must
# exit 0; their TAP is replayed here as one subtest per program.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Golden;

my $b = $ENV{KILN_BUILD} // 'build';
my @progs = (
    ["$b/tests/weights_test"],
    ["$b/tests/gguf_test"],
    ["$b/tests/kernels_test"],
    ["$b/tests/linear_test"],
    ["$b/tests/bind_test"],
    ["$b/tests/blob_test", "$b/tests/fake_prog"],
    ["$b/tests/sample_test"],
    ["$b/tests/ir_read_test"],
    ["$b/tests/ir_rewrite_test"],
    ["$b/tests/sema_define_test"],
    ["$b/tests/attn_passes_test", "tests/ir/pass-fuse-attn.in"],
    ["$b/tests/tokenizer_test", "examples/models/tok512.bin", "examples/models/stories260K-f32.gguf"],
);

for my $p (@progs) {
    my ($exe, @args) = @$p;
    subtest $exe => sub {
        ok(-x $exe, "$exe exists (build the project first)") or return;
        my $r = Golden::run_cmd($exe, @args);
        my ($plan, $seen, $bad) = (undef, 0, 0);
        for my $l (split /\n/, $r->{out}) {
            if ($l =~ /^1\.\.(\d+)/) { $plan = $1; next }
            if ($l =~ /^(not )?ok\b\s*(?:\d+)?\s*(?:-\s*)?(.*)$/) {
                my ($not, $desc) = ($1, $2);
                $seen++;
                my $todo = $desc =~ /#\s*TODO\b/i;
                $bad++ if $not && !$todo;
                ok(!$not || $todo, $desc eq '' ? "test $seen" : $desc);
                next;
            }
            note($l) if $l =~ /\S/;
        }
        ok($seen > 0, 'printed TAP results');
        is($seen, $plan, "ran the planned $plan tests") if defined $plan;
        ok($r->{rc} == 0 && !$r->{sig} && !$r->{timed_out}, 'exit status 0')
            or diag(Golden::how($r));
    };
}
done_testing();
