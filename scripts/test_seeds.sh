#!/usr/bin/env bash
# `make test-seeds [TESTS=...]`: the tests marked `numeric` (a training effect or a number a CPU kind can
# move) under SEG4REG_TEST_SEED=0..9 (SEEDS="..." for others), with oneDNN on and off, as another
# machine's floats would move them. Prints one line per run, then the range of every quantity a test
# records (`record_property`) over all runs; exits non-zero if any run failed.
set -uo pipefail
py=$1
shift
seeds=${SEEDS:-0 1 2 3 4 5 6 7 8 9}
xml=$(mktemp -d)
trap 'rm -rf "$xml"' EXIT
failed=0
for onednn in 1 0; do
  for seed in $seeds; do
    log=$(SEG4REG_TEST_SEED=$seed TF_ENABLE_ONEDNN_OPTS=$onednn "$py" -m pytest -q -p no:cacheprovider -m numeric \
      --junitxml="$xml/onednn$onednn-seed$seed.xml" "${@:-tests}" 2>&1)
    rc=$?
    echo "oneDNN=$onednn seed=$seed: $(echo "$log" | tail -n 1)"
    if [ $rc -ne 0 ]; then
      failed=1
      echo "$log" | grep -E "^(FAILED|ERROR)" | sed 's/^/    /'
    fi
  done
done
"$py" - "$xml" <<'PY'
import collections, glob, sys, xml.etree.ElementTree as ET
seen = collections.defaultdict(list)
for path in glob.glob(f"{sys.argv[1]}/*.xml"):
    for case in ET.parse(path).iter("testcase"):
        for prop in case.iter("property"):
            seen[(case.get("name"), prop.get("name"))].append(float(prop.get("value")))
for (test, name), values in sorted(seen.items()):
    print(f"{test} {name}: {min(values):.4g} .. {max(values):.4g} ({len(values)} runs)")
PY
exit $failed
