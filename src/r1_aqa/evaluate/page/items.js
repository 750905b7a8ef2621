(() => {
const D = JSON.parse(document.getElementById('report-data').textContent);
const L = i => String.fromCharCode(65 + i);
const el = (tag, attrs, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) e.setAttribute(k, v);
  for (const k of kids) if (k !== null && k !== undefined) e.append(k);
  return e;
};
for (const it of D.items)
  it.hay = [it.id, it.q, it.answer, it.pred, it.think, it.resp, it.sp, ...it.opts].filter(Boolean).join('\n')
    .toLowerCase();
const filters = document.getElementById('filters');
const state = {verdict: '', audio: '', listen: '', q: '', g: {}};
const select = (label, id, options, onchange) => {
  const s = el('select', {id});
  for (const [value, text] of options) s.append(el('option', {value}, text));
  s.addEventListener('change', () => { onchange(s.value); render(true); });
  filters.append(el('label', {for: id}, label), s);
};
select('verdict', 'f-verdict', [['', 'all'], ['right', 'right'], ['wrong', 'wrong'], ['unscored', 'unscored']],
       v => state.verdict = v);
for (const [field, values] of Object.entries(D.fields))
  select(field, 'f-' + field, [['', 'all'], ...values.map(v => [v, v])], v => state.g[field] = v);
if (D.silence)
  select('listening', 'f-listen', [['', 'all'], ['needs-audio', 'right only with audio'],
         ['right-silent', 'right with silence'], ['wrong-both', 'wrong either way']], v => state.listen = v);
select('audio', 'f-audio', [['', 'all'], ['missing', 'audio missing']], v => state.audio = v);
const search = el('input', {id: 'f-search', type: 'search', placeholder: 'search question, options, answers'});
search.addEventListener('input', () => { state.q = search.value.trim().toLowerCase(); render(true); });
filters.append(search);
const listening = it => it.v === 'right' && it.sv !== 'right' ? 'needs-audio'
  : it.sv === 'right' ? 'right-silent' : 'wrong-both';
const keep = it => (!state.verdict || it.v === state.verdict)
  && Object.entries(state.g).every(([f, v]) => !v || it.g[f] === v)
  && (!state.audio || it.audio === 'missing')
  && (!state.listen || listening(it) === state.listen)
  && (!state.q || it.hay.includes(state.q));
const card = it => {
  const top = el('div', {class: 'top'}, el('span', {class: 'badge ' + it.v}, it.v), el('span', {class: 'id'}, it.id));
  for (const [f, v] of Object.entries(it.g)) top.append(el('span', {class: 'badge', title: f}, v));
  if (it.perm) top.append(el('span', {class: 'badge', title: 'right under option orders'}, 'orders ' + it.perm));
  if (it.sv) top.append(el('span', {class: 'badge ' + it.sv}, 'silence: ' + it.sv));
  const audio = it.clip !== null && it.clip !== undefined
    ? el('audio', {controls: '', preload: 'none', src: D.clips[it.clip]})
    : el('div', {class: 'badge missing audio-state'}, it.audio === 'missing' ? 'audio missing'
                                                                              : 'no clip path in the predictions');
  const opts = el('ol', {type: 'A'});
  it.opts.forEach((o, i) => opts.append(el('li', {class: [i === it.ans ? 'answer' : '', i === it.pos ? 'picked' : '']
    .join(' ').trim() || null}, o)));
  const dl = el('dl', {});
  const row = (k, v) => { if (v !== null && v !== undefined && v !== '') dl.append(el('dt', {}, k), el('dd', {}, v)); };
  row('answer', (it.ans !== null ? L(it.ans) + '. ' : '') + it.answer);
  row('model answer', it.pred === null ? '(none)' : (it.pos !== null ? L(it.pos) + '. ' : '') + it.pred);
  if (D.silence) row('with silence', it.sp === null ? '(none)' : it.sp);
  row('reasoning', it.think);
  const raw = el('details', {}, el('summary', {}, 'raw response'), el('pre', {}, it.resp || ''));
  return el('article', {class: 'item ' + it.v, id: 'item-' + it.id, 'data-verdict': it.v, 'data-audio': it.audio},
            top, audio, el('div', {class: 'q'}, it.q), opts, dl, raw);
};
let matched = [], shown = 0;
const list = document.getElementById('item-list'), more = document.getElementById('more');
const count = document.getElementById('match-count');
function render(reset) {
  if (reset) { matched = D.items.filter(keep); shown = 0; list.replaceChildren(); }
  const upto = Math.min(matched.length, shown + D.pageSize);
  for (; shown < upto; shown++) list.append(card(matched[shown]));
  count.textContent = `${matched.length} of ${D.items.length} items`;
  count.dataset.matched = matched.length;
  more.hidden = shown >= matched.length;
}
more.addEventListener('click', () => render(false));
render(true);
const target = decodeURIComponent(location.hash.slice(1));
if (target.startsWith('item-')) {
  const i = matched.findIndex(it => 'item-' + it.id === target);
  while (i >= 0 && shown <= i) render(false);
  const e = document.getElementById(target);
  // after the plots above have loaded, which moves the cards down
  if (e) addEventListener('load', () => e.scrollIntoView());
}
})();
