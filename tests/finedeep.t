#!/usr/bin/perl
# Finedeep golden: M sub-layers of K all-active experts with output-guided sigmoid gates.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Golden;

Golden::golden_case(name => 'finedeep-tiny', spec => 'examples/finedeep.kiln',
                    format => 'safetensors');
done_testing();
