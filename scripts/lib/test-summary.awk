# Summarises the output of `cargo test` (libtest's default format).
# Prints one line: "tests: N passed, N failed, N ignored in N binaries", then
# "FAILED <binary> <test>" for each failed test and "CRASHED <binary>" for a
# test binary that ended without a result line (abort, signal, timeout).
# Used by scripts/test.sh; the FAILED/CRASHED lines are what scripts/flaky.sh counts.
/^ *Running / {
  if (bin != "" && !done) crashed[++ncrash] = bin
  p = $NF; gsub(/[()]/, "", p); sub(/^.*\//, "", p); sub(/-[0-9a-f]+$/, "", p)
  bin = ($2 == "unittests") ? p "(unit)" : p
  done = 0; nbin++
  next
}
/^ *Doc-tests / { if (bin != "" && !done) crashed[++ncrash] = bin; bin = $2 "(doc)"; done = 0; nbin++; next }
/^test .* \.\.\. FAILED$/ { name = $2; failed[++nfail] = bin " " name; next }
/^test result: / {
  done = 1
  for (i = 1; i <= NF; i++) {
    if ($i ~ /^passed;?$/) passed += $(i - 1)
    if ($i ~ /^ignored;?$/) ignored += $(i - 1)
  }
  next
}
END {
  if (bin != "" && !done) crashed[++ncrash] = bin
  printf "tests: %d passed, %d failed, %d ignored in %d binaries", passed, nfail, ignored, nbin
  if (ncrash > 0) printf ", %d binaries crashed", ncrash
  printf "\n"
  for (i = 1; i <= nfail; i++) print "FAILED " failed[i]
  for (i = 1; i <= ncrash; i++) print "CRASHED " crashed[i]
}
