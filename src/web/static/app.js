// lavabox web UI: the job log viewer (virtual scrolling over line ranges fetched by number,
// server-side level filters and search, live lines over SSE) and the submit page's upload.
// Everything a page does without this file still works as plain forms and links.
(function () {
  'use strict';
  const ROW = 18;            // px per log line (fixed: rows are `white-space: pre`)
  const CAP = 8000000;       // spacer height cap; browsers limit element heights
  const PAGE = 500;          // lines per range request

  const upload = document.getElementById('upload');
  if (upload) {
    upload.addEventListener('change', () => {
      const f = upload.files[0];
      if (!f) return;
      f.text().then((t) => {
        const ta = document.getElementById('definition');
        ta.value = t;
        ta.dispatchEvent(new Event('input', { bubbles: true }));
      });
    });
  }
  document.addEventListener('click', (e) => {
    const a = e.target.closest('#problems a[data-line]');
    if (!a) return;
    e.preventDefault();
    const ta = document.getElementById('definition');
    const n = +a.dataset.line, lines = ta.value.split('\n');
    let s = 0;
    for (let i = 0; i < n - 1 && i < lines.length; i++) s += lines[i].length + 1;
    ta.focus();
    ta.setSelectionRange(s, s + (lines[n - 1] || '').length);
  });

  const log = document.getElementById('log');
  if (!log) return;
  const job = log.dataset.job;
  const spacer = log.querySelector('.spacer');
  const rowsEl = log.querySelector('.rows');
  const follow = document.getElementById('follow');
  const count = document.getElementById('log-count');
  let lines = +log.dataset.lines;   // every line of the log
  let total = lines;                // lines in the current (filtered) view
  let levels = null;                // null: every level
  const folds = new Set();          // folded actions' line ranges, "from-to"
  let cache = new Map();            // page -> rows
  const pending = new Set();
  let hit = null;                   // real line number (0-based) highlighted
  let ours = false;                 // the next scroll event is ours
  follow.checked = log.dataset.finished !== 'true';

  const scaled = () => total * ROW > CAP;
  const visible = () => Math.ceil(log.clientHeight / ROW) + 1;
  function sizeSpacer() { spacer.style.height = Math.min(total * ROW, CAP) + 'px'; }
  function firstPos() {
    if (!scaled()) return Math.floor(log.scrollTop / ROW);
    const room = Math.max(1, CAP - log.clientHeight);
    return Math.floor((log.scrollTop / room) * Math.max(0, total - visible() + 1));
  }
  function topFor(pos) {
    if (!scaled()) return pos * ROW;
    const room = Math.max(1, CAP - log.clientHeight);
    return (pos / Math.max(1, total - visible() + 1)) * room;
  }
  function scrollToPos(pos) {
    ours = true;
    log.scrollTop = Math.max(0, topFor(pos));
    render();
  }
  const filtered = () => levels !== null || folds.size > 0;
  function params() {
    return (levels ? '&levels=' + encodeURIComponent(levels.join(',')) : '') +
      (folds.size ? '&hide=' + encodeURIComponent([...folds].join(',')) : '');
  }
  function fetchPage(p) {
    if (pending.has(p)) return;
    pending.add(p);
    const gen = cache;
    fetch(`/scheduler/job/${job}/lines?start=${p * PAGE}&count=${PAGE}${params()}`, { credentials: 'same-origin' })
      .then((r) => r.json())
      .then((d) => {
        pending.delete(p);
        if (gen !== cache) return;   // the filter changed meanwhile
        cache.set(p, d.rows);
        lines = d.lines;
        if (d.total !== total) { total = d.total; sizeSpacer(); }
        render();
      })
      .catch(() => pending.delete(p));
  }
  function rowAt(pos) {
    const p = Math.floor(pos / PAGE), page = cache.get(p);
    if (!page) { fetchPage(p); return null; }
    const r = page[pos - p * PAGE];
    if (!r && page.length < PAGE) { cache.delete(p); }
    return r || null;
  }
  function render() {
    const first = firstPos(), n = Math.min(visible(), Math.max(0, total - first));
    rowsEl.style.transform = `translateY(${scaled() ? log.scrollTop : first * ROW}px)`;
    while (rowsEl.children.length < n) {
      const div = document.createElement('div');
      const a = document.createElement('a'); a.className = 'n';
      const span = document.createElement('span'); span.className = 'msg';
      div.append(a, span);
      rowsEl.append(div);
    }
    while (rowsEl.children.length > n) rowsEl.lastChild.remove();
    for (let i = 0; i < n; i++) {
      const div = rowsEl.children[i], r = rowAt(first + i);
      const a = div.firstChild, span = div.lastChild;
      if (!r) { div.className = 'line'; a.textContent = ''; a.removeAttribute('href'); span.textContent = '…'; continue; }
      div.className = 'line lvl-' + r.lvl + (r.n === hit ? ' hit' : '');
      div.id = 'L' + (r.n + 1);
      a.textContent = r.n + 1;
      a.href = '#L' + (r.n + 1);
      // One row per line keeps the row height fixed: a message's own line breaks are shown
      // as ↵ and the whole message is in the row's tooltip.
      const multi = r.msg.includes('\n');
      span.textContent = multi ? r.msg.replace(/\n/g, ' ↵ ') : r.msg;
      if (multi) div.title = r.msg; else div.removeAttribute('title');
    }
    count.textContent = filtered() ? `${total} of ${lines} lines` : `${lines} lines`;
  }
  function goto(line) {   // 1-based real line number
    if (filtered()) {
      document.querySelectorAll('input[name=lvl]').forEach((c) => { c.checked = true; });
      folds.clear();
      document.querySelectorAll('button.fold').forEach((f) => { f.setAttribute('aria-pressed', 'false'); f.textContent = '▾'; });
      setLevels();
    }
    hit = line - 1;
    follow.checked = false;
    scrollToPos(Math.max(0, line - 1 - Math.floor(visible() / 3)));
    history.replaceState(null, '', '#L' + line);
  }
  function setLevels() {
    const on = [...document.querySelectorAll('input[name=lvl]')].filter((c) => c.checked).map((c) => c.value);
    const all = document.querySelectorAll('input[name=lvl]').length;
    levels = on.length === all ? null : on;
    cache = new Map();
    pending.clear();
    if (!filtered()) { total = lines; sizeSpacer(); }
    fetchPage(0);
    scrollToPos(0);
  }
  log.addEventListener('scroll', () => {
    if (!ours) {
      const bottom = log.scrollTop + log.clientHeight >= log.scrollHeight - ROW;
      follow.checked = bottom && log.dataset.finished !== 'true';
    }
    ours = false;
    render();
  });
  window.addEventListener('resize', render);
  document.querySelectorAll('input[name=lvl]').forEach((c) => c.addEventListener('change', setLevels));
  // Folding an action hides its lines under its start line (on the server, like levels).
  document.addEventListener('click', (e) => {
    const f = e.target.closest('button.fold');
    if (!f) return;
    const on = !folds.has(f.dataset.fold);
    if (on) folds.add(f.dataset.fold); else folds.delete(f.dataset.fold);
    f.setAttribute('aria-pressed', String(on));
    f.textContent = on ? '▸' : '▾';
    setLevels();
  });
  document.addEventListener('click', (e) => {
    const a = e.target.closest('a[href^="#L"]');
    if (!a) return;
    e.preventDefault();
    goto(+a.getAttribute('href').slice(2));
  });
  document.getElementById('log-goto').addEventListener('submit', (e) => {
    e.preventDefault();
    const n = +document.getElementById('goto-line').value;
    if (n > 0) goto(Math.min(n, lines));
  });
  document.getElementById('log-search').addEventListener('submit', (e) => {
    e.preventDefault();
    const q = document.getElementById('search-q').value;
    const out = document.getElementById('search-results');
    out.textContent = 'Searching…';
    fetch(`/scheduler/job/${job}/search?q=${encodeURIComponent(q)}`, { credentials: 'same-origin' })
      .then((r) => r.json())
      .then((d) => {
        out.textContent = '';
        if (!d.rows.length) { out.textContent = 'No line contains it.'; return; }
        for (const r of d.rows) {
          const li = document.createElement('li'), a = document.createElement('a');
          a.href = '#L' + (r.n + 1);
          a.textContent = 'line ' + (r.n + 1);
          li.append(a, ' ' + r.msg.slice(0, 200));
          out.append(li);
        }
      });
  });

  sizeSpacer();
  const m = /^#L(\d+)$/.exec(location.hash);
  if (m) goto(+m[1]);
  else if (follow.checked && lines > 0) scrollToPos(Math.max(0, total - visible() + 1));
  else render();

  if (log.dataset.finished === 'true') return;
  const state = document.getElementById('job-state');
  let es = null;
  // Details, pipeline and results are server-rendered: fetch them again (once per burst)
  // when the state changes or an action starts or ends.
  let refreshing = null;
  function refreshInfo() {
    if (refreshing || !window.htmx) return;
    refreshing = setTimeout(() => {
      refreshing = null;
      htmx.ajax('GET', location.pathname, { target: '#jobinfo', select: '#jobinfo', swap: 'outerHTML' });
    }, 300);
  }
  function connect() {
    es = new EventSource(`/scheduler/job/${job}/live?from=${lines}`);
    es.addEventListener('lines', (e) => {
      const d = JSON.parse(e.data);
      lines = d.lines;
      if (filtered()) {
        cache.delete(Math.floor(Math.max(0, total - 1) / PAGE));
        fetchPage(Math.floor(total / PAGE));
      } else {
        for (const r of d.rows) {
          const p = Math.floor(r.n / PAGE);
          if (!cache.has(p) && r.n % PAGE === 0) cache.set(p, []);
          const page = cache.get(p);
          if (page && page.length === r.n - p * PAGE) page.push(r);
        }
        total = lines;
        sizeSpacer();
      }
      if (d.rows.some((r) => r.lvl === 'info' && /^(start|end): [0-9.]+ /.test(r.msg))) refreshInfo();
      if (follow.checked) scrollToPos(Math.max(0, total - visible() + 1));
      else render();
    });
    es.addEventListener('state', (e) => {
      const d = JSON.parse(e.data);
      state.textContent = d.state + ' · ' + d.health;
      state.className = 'badge ' + d.class;
      refreshInfo();
    });
    es.addEventListener('end', () => {
      es.close();
      log.dataset.finished = 'true';
      follow.checked = false;
      const cancel = document.getElementById('cancel');
      if (cancel) cancel.closest('form').remove();
      refreshInfo();
    });
  }
  // One stream per tab, closed while the tab is hidden (browsers allow six per host).
  document.addEventListener('visibilitychange', () => {
    if (document.hidden) { if (es) { es.close(); es = null; } }
    else if (!es && log.dataset.finished !== 'true') connect();
  });
  connect();
})();
