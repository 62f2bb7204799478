// The top bar: brand, connection state, the agent's status, alerts settings, language, account.
// Built once and updated in place, so focus and open selects survive live updates.
import { askNotificationPermission, isMuted, notificationPermission, setMuted } from '../alerts';
import { h, icon } from '../dom';
import { t } from '../i18n';
import type { Store } from '../store';
import { STATUSES, type AgentStatus } from '../types';
import { initials, languageSelect, showLanguage } from './util';

export class TopBar {
  private brandName = h('span.brand-name');
  private conn = h('div.conn', { role: 'status' });
  private connText = h('span.conn-text');
  private statusWrap = h('div.status-wrap');
  private statusSelect: HTMLSelectElement;
  private bell: HTMLButtonElement;
  private sound: HTMLButtonElement;
  private langSelect: HTMLSelectElement;
  private signOutBtn: HTMLButtonElement;

  constructor(readonly el: HTMLElement, private store: Store, signOut: () => void, nav?: HTMLElement) {
    this.statusSelect = h('select.status-select', { onchange: () => store.setStatus(this.statusSelect.value as AgentStatus) });
    this.bell = h('button.icon-btn', {
      type: 'button',
      onclick: async () => {
        await askNotificationPermission();
        this.update();
      },
    }, icon('bell'));
    this.sound = h('button.icon-btn', {
      type: 'button',
      onclick: () => {
        setMuted(!isMuted());
        this.update();
      },
    });
    this.langSelect = languageSelect();
    this.signOutBtn = h('button.icon-btn', { type: 'button', onclick: signOut }, icon('logout'));
    this.conn.append(h('span.conn-dot', { 'aria-hidden': 'true' }), this.connText);
    this.statusWrap.append(h('span.status-dot', { 'aria-hidden': 'true' }), this.statusSelect);
    el.append(
      h('div.brand', null, h('span.brand-mark', { 'aria-hidden': 'true' }, icon('chat', 16)), this.brandName),
      ...(nav ? [nav] : []),
      this.conn,
      h('div.spacer'),
      this.statusWrap,
      this.bell,
      this.sound,
      h('div.lang-wrap', null, icon('globe', 16), this.langSelect),
      h('div.me', { title: `${store.me.name} <${store.me.email}>` },
        h('span.avatar.avatar--sm', { 'aria-hidden': 'true' }, initials(store.me.name)),
        h('span.me-name', null, store.me.name)),
      this.signOutBtn,
    );
    this.update();
  }

  update(): void {
    const s = this.store;
    this.brandName.textContent = t('appName');
    const mode = s.liveMode();
    const connText = { live: t('connLive'), connecting: t('connConnecting'), offline: t('connOffline'), polling: t('connPolling') }[mode];
    this.conn.className = `conn conn--${mode}`;
    this.conn.title = connText;
    this.connText.textContent = mode === 'polling' ? t('connLive') : connText;

    const labels = STATUSES.map((st) => t(`status_${st}` as const));
    if (this.statusSelect.options.length !== STATUSES.length || this.statusSelect.options[0].text !== labels[0]) {
      this.statusSelect.replaceChildren(...STATUSES.map((st, i) => h('option', { value: st }, labels[i])));
    }
    this.statusSelect.value = s.myStatus;
    this.statusSelect.setAttribute('aria-label', t('statusLabel'));
    this.statusWrap.className = `status-wrap status--${s.myStatus}`;

    const perm = notificationPermission();
    this.bell.hidden = perm === 'unsupported';
    const bellLabel = perm === 'granted' ? t('notificationsOn') : perm === 'denied' ? t('notificationsBlocked') : t('enableNotifications');
    this.bell.setAttribute('aria-label', bellLabel);
    this.bell.title = bellLabel;
    this.bell.className = `icon-btn ${perm === 'default' ? 'attention' : perm === 'granted' ? 'on' : ''}`;

    const muted = isMuted();
    this.sound.replaceChildren(icon(muted ? 'mute' : 'volume'));
    this.sound.setAttribute('aria-label', muted ? t('soundOff') : t('soundOn'));
    this.sound.setAttribute('aria-pressed', String(!muted));
    this.sound.title = muted ? t('soundOff') : t('soundOn');

    showLanguage(this.langSelect);
    this.signOutBtn.setAttribute('aria-label', t('signOut'));
    this.signOutBtn.title = t('signOut');
  }
}
