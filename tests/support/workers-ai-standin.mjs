// A stand-in for Cloudflare's Workers AI binding (`env.AI`), which exists only on Cloudflare:
// `run(model, input)` with the input and answer shapes Workers AI documents for its
// translation model (m2m100: {text, source_lang, target_lang} → {translated_text}) and its text
// models ({messages} → {response}). Loaded by scripts/runtime.mjs as a wrapped binding in tests.
//
// Translations are marked, not real: "[zh] hello". A text containing FAIL makes the call throw,
// one containing SLOW never answers, as a provider can.

const never = () => new Promise(() => {});

function translate({ text, source_lang: from, target_lang: to }) {
  if (typeof text !== 'string' || !from || !to) throw new Error('m2m100: text, source_lang and target_lang are required');
  if (text.includes('FAIL')) throw new Error('AI: 3040 capacity exceeded');
  if (text.includes('SLOW')) return never();
  return { translated_text: `[${to}] ${text}` };
}

function chat({ messages }) {
  if (!Array.isArray(messages) || messages.length === 0) throw new Error('text model: messages are required');
  const system = messages.find((m) => m.role === 'system')?.content ?? '';
  const last = messages.at(-1).content ?? '';
  if (last.includes('FAIL')) throw new Error('AI: 3040 capacity exceeded');
  if (last.includes('SLOW')) return never();
  const known = /shipping/i.test(last) && system.includes('Shipping takes 3 days');
  return { response: known ? 'Shipping takes 3 days within the EU.' : "I don't know that; you can ask for a person." };
}

// Named as Cloudflare's binding class is: workers-rs checks the binding's constructor name.
class Ai {
  async run(model, input) {
    if (model === '@cf/meta/m2m100-1.2b') return translate(input);
    if (/^@cf\/meta\/llama-/.test(model)) return chat(input);
    throw new Error(`AI: no such model ${model}`);
  }
}

export default function workersAi() {
  return new Ai();
}
