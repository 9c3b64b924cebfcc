"""Writes check.md and check.json from check.sh's part records (``parts.tsv`` in the output folder).

Each record: name, status (ok / failed / timeout / skipped), exit code, seconds, command, the
part's log, its result file (markdown table or JSON line) and a note. A failed part's row shows the
last error line of its log; the parts' own tables follow the summary table.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def last_error(log: Path) -> str:
    if not log.is_file():
        return ''
    lines = [line.strip() for line in log.read_text(errors='replace').splitlines() if line.strip()]
    errors = [line for line in lines if 'Error' in line or 'error' in line]
    return ((errors or lines or [''])[-1])[:240].replace('|', '/')


def read_result(path: Path):
    if not path.is_file():
        return None
    text = path.read_text(errors='replace').strip()
    if path.suffix == '.json':
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return None
    return text


def main(out: Path, header: str) -> int:
    parts = []
    for line in (out / 'parts.tsv').read_text().splitlines():
        name, status, rc, seconds, command, log, result, note = (line.split('\t') + [''] * 8)[:8]
        part = {'part': name, 'status': status, 'rc': int(rc) if rc.lstrip('-').isdigit() else None,
                'seconds': float(seconds or 0), 'command': command, 'log': log, 'note': note or None}
        result_path = Path(result) if result else None
        part['result_file'] = result or None
        part['result'] = read_result(result_path) if result_path else None
        json_twin = result_path.with_suffix('.json') if result_path and result_path.suffix == '.md' else None
        if json_twin and json_twin.is_file():
            part['result_json'] = read_result(json_twin)
        part['error'] = last_error(Path(log)) if status not in ('ok', 'skipped') else None
        parts.append(part)
    lines = [header, '', '| part | status | time (s) | result / error |', '|---|---|---|---|']
    for p in parts:
        if p['status'] == 'ok' and isinstance(p['result'], dict):
            shown = ', '.join(f'{k}={v}' for k, v in p['result'].items() if v is not None and k != 'note')
            if p['result'].get('note'):
                shown += f"; {p['result']['note']}"
        elif p['status'] == 'ok':
            shown = f"table below ({Path(p['result_file']).name})" if p['result_file'] else 'ok'
        else:
            shown = p['note'] or p['error'] or ''
            if p['error'] and p['note']:
                shown += f": {p['error']}"
        if p['note'] and p['status'] == 'ok':
            shown += f" ({p['note']})"
        rc = '' if p['rc'] is None else f" (rc {p['rc']})"
        lines.append(f"| {p['part']} | {p['status']}{rc} | {p['seconds']:.0f} | {shown} |")
    for p in parts:
        if isinstance(p['result'], str):
            lines += ['', f"### {p['part']}", '', p['result']]
    (out / 'check.md').write_text('\n'.join(lines) + '\n')
    (out / 'check.json').write_text(json.dumps({'header': header, 'parts': parts}, indent=2) + '\n')
    sys.stdout.write('\n'.join(lines[:len(parts) + 4]) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else '# Device check'))
