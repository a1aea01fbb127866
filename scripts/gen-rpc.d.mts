export declare const PLUGIN: { crate: string; version: string; bin: string }
export declare function slimrpcPlugin(): string
export declare function generate(out?: string, sources?: string): string
