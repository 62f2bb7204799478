// A small emoji picker: grouped grid, arrow keys move, Enter inserts, Escape closes.
import { h } from '../dom';
import { t, type Key } from '../i18n';

const GROUPS: { key: Key; chars: string }[] = [
  { key: 'emoji_smileys', chars: '😀 😃 😄 😁 😆 😅 😂 🙂 😉 😊 😇 🥰 😍 😘 😋 😎 🤔 🤗 🤩 🥳 😐 😑 😶 🙄 😏 😮 😯 😴 😌 😔 😕 🙃 😢 😭 😤 😱 😳 🥺 😬 🤝' },
  { key: 'emoji_gestures', chars: '👍 👎 👌 ✌️ 🤞 👏 🙌 👋 🙏 💪 👉 👈 👆 👇 ✋ 🤙' },
  { key: 'emoji_objects', chars: '📦 🚚 ✈️ 🛒 🎁 💳 💰 🧾 📱 💻 📧 📞 📅 ⏰ 🔑 🔗' },
  { key: 'emoji_symbols', chars: '❤️ 💙 💚 💛 ✅ ❌ ⚠️ ❓ ❗ ⭐ 🌟 🔥 🎉 💯 ➡️ 🆗' },
];
const COLS = 8;

export class EmojiPicker {
  readonly el: HTMLElement;
  private buttons: HTMLButtonElement[] = [];

  constructor(private insert: (s: string) => void, private onClose: () => void) {
    this.el = h('div.popover.emoji-picker', { role: 'dialog', hidden: true, onkeydown: (e: KeyboardEvent) => this.onKey(e) });
    this.build();
  }

  private build(): void {
    this.buttons = [];
    this.el.setAttribute('aria-label', t('emoji'));
    const sections = GROUPS.map((g) => {
      const labelId = `emoji-${g.key}`;
      return h('div.emoji-group', { role: 'group', 'aria-labelledby': labelId },
        h('div.emoji-group-label', { id: labelId }, t(g.key)),
        h('div.emoji-grid', null, g.chars.split(' ').map((c) => {
          const b = h('button.emoji', { type: 'button', tabindex: -1, 'aria-label': c, onclick: () => this.pick(c) }, c);
          this.buttons.push(b);
          return b;
        })));
    });
    this.el.replaceChildren(...sections);
    if (this.buttons[0]) this.buttons[0].tabIndex = 0;
  }

  relabel(): void {
    this.build();
  }

  get isOpen(): boolean {
    return !this.el.hidden;
  }

  open(): void {
    this.el.hidden = false;
    (this.buttons.find((b) => b.tabIndex === 0) ?? this.buttons[0])?.focus();
  }

  close(): void {
    if (this.el.hidden) return;
    this.el.hidden = true;
    this.onClose();
  }

  private pick(c: string): void {
    this.insert(c);
    this.close();
  }

  private onKey(e: KeyboardEvent): void {
    const i = this.buttons.indexOf(document.activeElement as HTMLButtonElement);
    let j = -1;
    if (e.key === 'Escape') {
      e.preventDefault();
      e.stopPropagation();
      this.close();
      return;
    }
    if (i < 0) return;
    if (e.key === 'ArrowRight') j = Math.min(this.buttons.length - 1, i + 1);
    else if (e.key === 'ArrowLeft') j = Math.max(0, i - 1);
    else if (e.key === 'ArrowDown') j = Math.min(this.buttons.length - 1, i + COLS);
    else if (e.key === 'ArrowUp') j = Math.max(0, i - COLS);
    else if (e.key === 'Home') j = 0;
    else if (e.key === 'End') j = this.buttons.length - 1;
    if (j >= 0) {
      e.preventDefault();
      this.buttons[i].tabIndex = -1;
      this.buttons[j].tabIndex = 0;
      this.buttons[j].focus();
    }
  }
}
