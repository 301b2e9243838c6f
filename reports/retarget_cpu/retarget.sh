cd /work/main
R=reports/retarget_cpu
rm -rf runs/retarget
{ echo "# $(date -u +%FT%TZ) start $(git log -1 --format=%h), python -m compress --target-latency 0.02x --out runs/retarget"
  /usr/bin/time -f "# wall %e s, max RSS %M kB" .venv/bin/python -m compress --target-latency 0.02x --out runs/retarget; echo "# $(date -u +%FT%TZ) end rc $?"; } > $R/refused.log 2>&1
ls --full-time runs/retarget > $R/kept_after_refusal.txt
{ echo "# $(date -u +%FT%TZ) start $(git log -1 --format=%h), python -m compress --target-latency 0.5x --out runs/retarget --resume"
  /usr/bin/time -f "# wall %e s, max RSS %M kB" .venv/bin/python -m compress --target-latency 0.5x --out runs/retarget --resume; echo "# $(date -u +%FT%TZ) end rc $?"; } > $R/resumed.log 2>&1
ls --full-time runs/retarget > $R/after_resume.txt
