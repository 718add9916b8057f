// Herald analytics sign-in: exchanges the operator token for the dashboard's session cookie
// (POST /v1/session, the token in the Authorization header; the cookie is HttpOnly, so this
// script never keeps the token), then opens the dashboard.
'use strict';

const $ = (id) => document.getElementById(id);

function showError(msg) {
  $('error').textContent = msg;
  $('error').hidden = false;
  document.body.dataset.state = 'error';
}

async function signIn(ev) {
  ev.preventDefault();
  const token = $('token').value.trim();
  $('token').value = '';
  const res = await fetch('/v1/session', { method: 'POST', headers: { Authorization: 'Bearer ' + token }, cache: 'no-store' });
  if (!res.ok) {
    let msg = 'sign-in failed (' + res.status + ')';
    try { const body = await res.json(); if (res.status === 401) msg = 'that is not the operator token'; else if (body.error) msg = body.error.message; } catch (_) { /* not JSON */ }
    showError(msg);
    return;
  }
  location.replace('/dashboard/' + location.search); // ?refresh=N carries over
}

async function init() {
  $('signin').addEventListener('submit', (ev) => { signIn(ev).catch((err) => showError(err.message)); });
  // Already signed in (the cookie is still valid): straight to the dashboard.
  const res = await fetch('/v1/session', { cache: 'no-store' });
  if (res.ok && (await res.json()).signed_in) location.replace('/dashboard/' + location.search);
  document.body.dataset.state = 'ready';
}

init().catch((err) => showError('could not load: ' + err.message));
