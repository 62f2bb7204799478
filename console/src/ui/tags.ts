// Conversation tags: chips with a remove button and an input; Enter or comma adds, Backspace in
// an empty input removes the last one. Hidden when the server has no tags endpoint.
import type { ConvSession } from '../conversation';
import { h, icon } from '../dom';
import { t } from '../i18n';

export class TagEditor {
  readonly el = h('div.tags');
  private input: HTMLInputElement;
  private chips = h('ul.tag-list');
  /** What came back into the box after its save failed: leaving the box does not send it
   *  again (Enter does, or changing it), so one refusal is not followed by more. */
  private refused: string | null = null;

  constructor(private session: ConvSession, private toast: (s: string, kind?: 'info' | 'error') => void) {
    this.input = h('input.tag-input', {
      type: 'text', maxlength: 32, autocomplete: 'off',
      onkeydown: (ev: KeyboardEvent) => this.onKey(ev),
      // Once changed, it is what the agent types now, even if it comes back to the same text.
      oninput: () => { if (this.input.value !== this.refused) this.refused = null; },
      onblur: () => {
        const typed = this.input.value;
        if (typed.trim() && typed !== this.refused) void this.add(typed);
      },
    });
    this.el.append(h('span.tags-icon', { 'aria-hidden': 'true' }, icon('tag', 14)), this.chips, this.input);
    session.on('tags', () => this.render());
    this.render();
  }

  render(): void {
    const tags = this.session.tags;
    this.el.hidden = tags === null;
    this.el.setAttribute('role', 'group');
    this.el.setAttribute('aria-label', t('tags'));
    this.input.placeholder = t('addTagPlaceholder');
    this.input.setAttribute('aria-label', t('addTag'));
    this.chips.replaceChildren(...(tags ?? []).map((tag) => h('li.tag', null,
      h('span', null, tag),
      h('button.tag-x', { type: 'button', 'aria-label': t('removeTag', { tag }), title: t('removeTag', { tag }), onclick: () => this.remove(tag) }, icon('close', 10)))));
  }

  private onKey(ev: KeyboardEvent): void {
    if ((ev.key === 'Enter' || ev.key === ',') && !ev.isComposing) {
      ev.preventDefault();
      this.add(this.input.value);
    } else if (ev.key === 'Backspace' && !this.input.value && this.session.tags?.length) {
      this.remove(this.session.tags[this.session.tags.length - 1]);
    }
  }

  private async add(raw: string): Promise<void> {
    const tag = raw.replace(/,/g, ' ').trim().slice(0, 32);
    this.input.value = '';
    this.refused = null;
    const tags = this.session.tags ?? [];
    if (!tag || tags.some((x) => x.toLowerCase() === tag.toLowerCase())) return;
    // What the agent typed comes back into the box if saving fails (unless they typed on).
    if (!(await this.save([...tags, tag])) && !this.input.value) {
      this.input.value = raw;
      this.refused = raw;
    }
  }

  private async remove(tag: string): Promise<void> {
    // The chip (and its focused button) goes away: keep focus in the tag editor, now, not after
    // the request (focus must never jump later, e.g. while the agent types a reply).
    if (this.el.contains(document.activeElement)) this.input.focus();
    await this.save((this.session.tags ?? []).filter((x) => x !== tag));
  }

  /** Saves the tags; false (after telling the agent why) when that failed. */
  private async save(tags: string[]): Promise<boolean> {
    try {
      await this.session.setTags(tags);
      return true;
    } catch (e) {
      this.toast((e as Error).message || t('genericError'), 'error');
      return false;
    }
  }
}
