/**
 * Accumulates nodes, initializers, inputs and outputs of one ONNX graph, generating
 * unique value names so op helpers can be chained like function calls.
 */
import type { AttributeProto, GraphProto, NodeProto, TensorProto, ValueInfoProto } from './onnx-proto.js';

export class GraphBuilder {
  private readonly nodes: NodeProto[] = [];
  private readonly initializers: TensorProto[] = [];
  private readonly inputs: ValueInfoProto[] = [];
  private readonly outputs: ValueInfoProto[] = [];
  private readonly usedNames = new Set<string>();
  private counter = 0;

  constructor(readonly name: string) {}

  /** A fresh value name with a readable prefix. */
  uniqueName(prefix: string): string {
    let candidate = prefix;
    while (this.usedNames.has(candidate)) candidate = `${prefix}_${++this.counter}`;
    this.usedNames.add(candidate);
    return candidate;
  }

  private claim(name: string): void {
    if (this.usedNames.has(name)) throw new Error(`graph ${this.name}: value name "${name}" already used`);
    this.usedNames.add(name);
  }

  addInput(info: ValueInfoProto): string {
    const name = info.name ?? '';
    this.claim(name);
    this.inputs.push(info);
    return name;
  }

  /** Declares an existing value as a graph output. */
  addOutput(info: ValueInfoProto): void {
    if (!info.name || !this.usedNames.has(info.name)) throw new Error(`graph ${this.name}: output "${info.name}" is not produced`);
    this.outputs.push(info);
  }

  addInitializer(tensor: TensorProto): string {
    const name = tensor.name ?? '';
    this.claim(name);
    this.initializers.push(tensor);
    return name;
  }

  /**
   * Appends a node with one output and returns the output's name; `outputName`
   * pins the name (e.g. the graph output), otherwise one is generated from the op type.
   */
  node(opType: string, inputs: readonly string[], attributes: readonly AttributeProto[] = [], outputName?: string): string {
    for (const input of inputs) {
      if (input !== '' && !this.usedNames.has(input)) throw new Error(`graph ${this.name}: ${opType} input "${input}" is not defined`);
    }
    let output: string;
    if (outputName !== undefined) {
      this.claim(outputName);
      output = outputName;
    } else {
      output = this.uniqueName(opType.toLowerCase());
    }
    this.nodes.push({
      opType,
      name: this.uniqueName(`${opType}_node`),
      input: [...inputs],
      output: [output],
      attribute: [...attributes],
    });
    return output;
  }

  toGraphProto(): GraphProto {
    if (this.inputs.length === 0 || this.outputs.length === 0) throw new Error(`graph ${this.name}: needs at least one input and one output`);
    return {
      name: this.name,
      node: [...this.nodes],
      initializer: [...this.initializers],
      input: [...this.inputs],
      output: [...this.outputs],
    };
  }
}
