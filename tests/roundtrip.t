#!/usr/bin/perl
# The IR reads back: for every example, the dump at every pass boundary (straight from the
# front end, after each pass; with f32 and with bf16 weights, whose IR starts at the widen
# pass) read by `kiln dump FILE.ir` prints again byte for byte, and running the pipeline on
# the front end's dump read back gives what the pipeline gives from the spec.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Golden qw(run_cmd);

my $kiln = Golden::kiln();
my $dir  = Golden::tmpdir();
my @passes = ('none', 'widen', 'cse', 'dce', 'memplan');

sub write_file {
    my ($f, $text) = @_;
    open my $fh, '>', $f or die "$f: $!";
    print $fh $text;
    close $fh;
}

for my $spec (sort glob 'examples/*.kiln') {
    (my $name = $spec) =~ s{.*/|\.kiln$}{}g;
    for my $wt ('f32', 'bf16') {
        for my $p (@passes) {
            next if $p eq 'none' && $wt ne 'f32';
            my $r = run_cmd($kiln, 'dump', $spec, '--wtype', $wt, '--after', $p);
            ok($r->{rc} == 0 && $r->{out} =~ /^kiln-ir 2\n/, "$name ($wt): dump after $p")
                or do { diag(Golden::how($r)); next };
            my $f = "$dir/$name-$wt-$p.ir";
            write_file($f, $r->{out});
            my $back = run_cmd($kiln, 'dump', $f);
            ok($back->{rc} == 0 && $back->{out} eq $r->{out},
               "$name ($wt): the dump after $p reads back byte for byte")
                or diag(Golden::how($back));
        }
        # the rest of the pipeline on the front end's dump = the pipeline on the spec
        my $full = run_cmd($kiln, 'dump', $spec, '--wtype', $wt);
        my $rest = run_cmd($kiln, 'dump', "$dir/$name-f32-none.ir", '--wtype', $wt, '--after', 'memplan');
        ok($full->{rc} == 0 && $rest->{rc} == 0 && $rest->{out} eq $full->{out},
           "$name ($wt): the pipeline on the front end's dump read back equals the pipeline on the spec")
            or diag(Golden::how($rest));
    }
}
# another block size for a planned dump: the plan is made again, as from the spec
my $want4 = run_cmd($kiln, 'dump', 'examples/llama.kiln', '--max-batch', 4);
my $from4 = run_cmd($kiln, 'dump', "$dir/llama-f32-memplan.ir", '--max-batch', 4, '--after', 'memplan');
ok($want4->{rc} == 0 && $from4->{rc} == 0 && $from4->{out} eq $want4->{out}
   && $want4->{out} =~ /^batch T<=4$/m, '--max-batch on a planned dump plans its memory again');

# a damaged dump is refused with its place
my $good = Golden::slurp("$dir/llama-f32-memplan.ir");
(my $bad = $good) =~ s/= linear/= linaer/;
write_file("$dir/bad.ir", $bad);
my $r = run_cmd($kiln, 'dump', "$dir/bad.ir");
ok($r->{rc} == 1 && $r->{err} =~ m{bad\.ir:\d+:\d+: error: unknown op 'linaer'} && $r->{out} eq '',
   'a dump with an unknown op is refused at its place, with no output') or diag(Golden::how($r));
(my $wrong = $good) =~ s/(%\d+ : f32\[T, )64(\] = linear)/${1}65$2/;
write_file("$dir/wrong.ir", $wrong);
$r = run_cmd($kiln, 'dump', "$dir/wrong.ir");
ok($r->{rc} == 1 && $r->{err} =~ /IR verifier: .*has type f32\[T, 65\], its operands give f32\[T, 64\]/
   && $r->{err} =~ /wrong\.ir: error: the IR does not verify/, 'a dump with a wrong type fails the verifier')
    or diag(Golden::how($r));
$r = run_cmd($kiln, 'dump', 'examples/llama.kiln', '--wtype', 'bf16', '--after', 'none');
ok($r->{rc} == 2 && $r->{err} =~ /through the widen pass/, '--wtype bf16 --after none is refused');
$r = run_cmd($kiln, 'dump', "$dir/llama-f32-none.ir", '-D', 'dim=32');
ok($r->{rc} == 2 && $r->{err} =~ /-D and --config apply to specs/, '-D with an IR dump is a usage error');
done_testing();
