// Types for hearth.js: OpenAI's chat-completions shapes, as Hearth reads and writes them.

export interface ChatMessage {
  role: "system" | "developer" | "user" | "assistant";
  content: string | Array<{ type: "text"; text: string }>;
  name?: string;
}

export interface ChatCompletionRequest {
  messages: ChatMessage[];
  model?: string;
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  max_completion_tokens?: number;
  /** Deprecated alias of max_completion_tokens. */
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  seed?: number;
  stop?: string | string[];
  n?: 1;
  /** llama.cpp's samplers. */
  top_k?: number;
  min_p?: number;
  repeat_penalty?: number;
  /** Hearth's extensions: the response then carries a `hearth` object. */
  hearth?: { overflow?: "drop_oldest" | "refuse"; tokens?: boolean };
  /** Accepted and ignored. */
  user?: string;
  metadata?: Record<string, string>;
  store?: boolean;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
}

export interface HearthExtension {
  dropped: number;
  stop_reason: "eos" | "stop_string" | "max_tokens" | "context_full" | "interrupted";
  timings: Record<string, number>;
  tokens?: number[];
}

export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: Array<{
    index: number;
    message: { role: "assistant"; content: string };
    finish_reason: "stop" | "length";
    logprobs: null;
  }>;
  usage: Usage;
  hearth?: HearthExtension;
}

export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  choices: Array<{
    index: number;
    delta: { role?: "assistant"; content?: string };
    finish_reason: "stop" | "length" | null;
    logprobs: null;
  }>;
  usage: Usage | null;
  hearth?: HearthExtension;
}

export interface Progress {
  phase: "downloading" | "verifying" | "loading";
  loaded: number;
  total: number;
  bytesPerSecond: number;
}

export interface EngineOptions {
  /** A catalog id (catalog.json beside hearth.js), or a file and its sha256. */
  model: string | { url: string; sha256: string; name?: string };
  /** KV cache positions (default: the catalog's default context). */
  context?: number;
  onProgress?: (p: Progress) => void;
  /** Where relative catalog URLs point (default: the folder above this one, the app). */
  modelBaseUrl?: string | URL;
}

export declare class HearthAPIError extends Error {
  name: "HearthAPIError";
  status: number;
  type: string | null;
  code: string | null;
  param: string | null;
}

export interface Engine {
  readonly model: string;
  readonly info: Record<string, unknown>;
  chat: {
    completions: {
      create(body: ChatCompletionRequest & { stream?: false }, options?: { signal?: AbortSignal }): Promise<ChatCompletion>;
      create(
        body: ChatCompletionRequest & { stream: true },
        options?: { signal?: AbortSignal },
      ): Promise<AsyncIterableIterator<ChatCompletionChunk> & { requestId: number }>;
    };
  };
  models: { list(): Promise<{ object: "list"; data: Array<{ id: string; object: "model" }> }> };
  /** How a request ended in the worker (for tests and tools): tokens decoded, and how many
   * had been decoded when its abort arrived. */
  requestStats(requestId: number): Promise<{ decoded: number; decodedAtAbort: number | null }>;
  unload(): Promise<void>;
}

export declare function createEngine(options: EngineOptions): Promise<Engine>;
