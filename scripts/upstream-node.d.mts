export declare const UPSTREAM_NODE_VERSION: string
export declare function upstreamNode(): string
